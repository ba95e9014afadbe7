"""The benchmarks' one shared helper: a wall-clock time that includes the CUDA work it queued."""

import time
from collections.abc import Callable
from typing import Any

import torch


def timed(fn: Callable[[], Any], device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
