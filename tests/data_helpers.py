"""Helpers for the data tests (test_data.py, test_fineweb_edu.py): the prepare scripts run as
subprocesses (in conftest's offline `env`), and checks of their outputs and one-line errors."""

import subprocess
import sys
from pathlib import Path

import numpy as np


def run(env, *cmd, **extra_env):
    return subprocess.run(
        [sys.executable, *map(str, cmd)], capture_output=True, text=True, env={**env, **extra_env}, timeout=300
    )


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16)


def assert_one_line_error(result, *fragments):
    """Exit status 2, and stderr ends in one "error: ..." line naming the fix; no traceback."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in last, last


def leftovers(out_dir):
    return sorted(p.name for p in Path(out_dir).iterdir()) if Path(out_dir).exists() else []
