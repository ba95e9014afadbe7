"""Helpers for the data tests (test_data.py, test_fineweb_edu.py): an offline environment for the
prepare scripts run as subprocesses, and checks of their outputs and one-line errors."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
DEAD_PROXY = "http://127.0.0.1:9"  # connection refused at once: no test ever downloads


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Environment for this module and its subprocesses: private caches, no network."""
    base = tmp_path_factory.mktemp("env")
    values = {"HF_DATASETS_CACHE": str(base / "hf"), "TIKTOKEN_CACHE_DIR": str(base / "tiktoken"),
              "HTTPS_PROXY": DEAD_PROXY, "HTTP_PROXY": DEAD_PROXY, "HF_DATASETS_OFFLINE": "1",
              "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        yield dict(os.environ)


def run(env, *cmd, **extra_env):
    return subprocess.run([sys.executable, *map(str, cmd)], capture_output=True, text=True,
                          env={**env, **extra_env}, timeout=300)


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
