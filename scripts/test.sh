#!/usr/bin/env bash
# The test suite from a fresh clone: .venv, the gate (ruff lint and format check, mypy; pyproject.toml), then
# pytest on the CPU, one worker per core, each test file on one worker (its module fixtures built once).
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k resume -x`; `-n 0` runs in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
ruff check .
ruff format --check .
mypy
exec python -m pytest -q -n auto --dist loadfile "$@"
