#!/usr/bin/env bash
# The test suite from a fresh clone: sets up .venv, then the gate (ruff's lint and format check, mypy's types,
# set in pyproject.toml) and pytest (CPU only, no network).
# The test files run in parallel, one pytest worker per core (pytest-xdist), each file on one worker
# so that its module fixtures are built once. Extra arguments go to pytest, e.g.
# `bash scripts/test.sh -k resume -x`; `-n 0` runs everything in this one process.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
export HF_DATASETS_OFFLINE=1 HF_HUB_OFFLINE=1 WANDB_MODE=disabled
ruff check .
ruff format --check .
mypy
exec python -m pytest -q -n auto --dist loadfile "$@"
