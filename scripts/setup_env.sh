# Sourced by quickstart.sh and test.sh: make ./.venv with the pinned requirements and this repository
# (editable) and activate it. Re-installs only when requirements.txt, pyproject.toml or the folder
# change. Set PYTHON to choose the interpreter (3.11+).
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "error: needs Python 3.11 or newer ($PYTHON is $("$PYTHON" --version 2>&1)); set PYTHON=python3.11" >&2
    exit 1
fi
if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv with $("$PYTHON" --version)"
    "$PYTHON" -m venv .venv
fi
stamp=.venv/.requirements.sha256
want=$(cat requirements.txt pyproject.toml <(echo "$PWD") | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing requirements.txt and this repository (editable) into .venv (about a minute)"
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
    # puts the repository root on sys.path for every script and test (pyproject.toml)
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
    echo "$want" > "$stamp"
fi
export PATH="$PWD/.venv/bin:$PATH"
