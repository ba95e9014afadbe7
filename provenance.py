"""Where a run came from, recorded in its config.json and wandb config (as modded-nanogpt logs its
source and versions): the git commit and whether the tree had uncommitted changes, the torch, CUDA
and Python versions, the device, the host and the command line."""
import platform
import shlex
import socket
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent


def _git(*args):
    """git's output in this repository, or None (no git, not a checkout)."""
    try:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def provenance(device):
    """A JSON-ready dict of where this process runs from and on."""
    commit = _git("rev-parse", "HEAD")
    changes = _git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if changes is None else bool(changes),
            "torch": torch.__version__, "cuda": torch.version.cuda, "python": platform.python_version(),
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine(),
            "hostname": socket.gethostname(), "command": shlex.join(sys.argv)}
