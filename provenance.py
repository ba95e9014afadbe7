"""Where a run came from, recorded in its config.json and wandb config: the git commit and whether the tree had
uncommitted changes, the torch, CUDA and Python versions, the device (a GPU's memory and bf16 support), the host
and the command line. REPO is the repository's root, the one name every module and test uses for it."""

import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent


def git(*args: str) -> str | None:
    """git's output in this repository, or None (no git, not a checkout)."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(device: torch.device) -> dict:
    """A JSON-ready dict of where this process runs from and on."""
    commit = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no") if commit else None
    gpu = torch.cuda.get_device_properties(device) if device.type == "cuda" else None
    out: dict[str, Any] = {"git_commit": commit, "git_dirty": None if changes is None else bool(changes)}
    out |= {"torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version()}
    out |= {"device": gpu.name if gpu else platform.machine(), "gpu_memory_gib": gpu and gpu.total_memory / 2**30}
    out |= {"bf16": gpu and torch.cuda.is_bf16_supported(), "hostname": socket.gethostname()}
    return out | {"command": shlex.join(sys.argv)}
