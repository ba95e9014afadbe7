"""Where a training step's time goes: data loading, forward+backward, the optimizer step and
Sophia's Hessian refresh (train.py marks those parts; scripts/bench/bench_train.py switches the timer on),
and the model FLOPs utilisation (MFU) of a device.

    timer = StepTimer(device, enabled=True)
    with timer("data"):
        x, y = get_batch(...)
    timer.seconds()  # {"data": 0.0012, ...}

A part opened inside another one is charged to the outer one (the Hessian refresh loads data and
runs forward+backward too; all of it counts as "hessian"). On CUDA the parts are measured on the
device timeline with events, so a part is charged the device time between its start and end,
including any time the device sat idle waiting for the host: a stall shows up where it happens.
Switched off, a part costs one attribute check.
"""

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

# Dense bf16 tensor-core peak per device (torchtitan's table), first match of the device name wins.
# Override with train.py's `peak_flops`.
PEAK_FLOPS = (("H100 PCIe", 756e12), ("H100 NVL", 835e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12))


def peak_flops(device: torch.device, override: float = 0.0) -> float | None:
    """The device's dense bf16 peak in FLOP/s, or None when it is not known (CPU, other GPUs)."""
    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((flops for key, flops in PEAK_FLOPS if key in name), None)


def mfu(flops_per_token: float, tokens: int, seconds: float, world_size: int, peak: float | None) -> float | None:
    """Model FLOPs utilisation per device, as nanoGPT reports it: the FLOP/s that `tokens` (processed
    by all `world_size` devices together in `seconds`) stand for, per device, over one device's peak."""
    if not peak:
        return None
    return flops_per_token * tokens / seconds / world_size / peak


class StepTimer:
    def __init__(self, device: torch.device, enabled: bool = False):
        self.device = device
        self.enabled = enabled
        self._depth = 0
        self._spans: list[tuple[str, Any, Any]] = []  # (part, start, end): perf_counter seconds, or CUDA events

    def __call__(self, part: str) -> AbstractContextManager:
        return self._timed(part) if self.enabled else nullcontext()

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        self._depth += 1
        start = self._mark() if self._depth == 1 else None
        try:
            yield
        finally:
            if self._depth == 1:
                self._spans.append((part, start, self._mark()))
            self._depth -= 1

    def _mark(self) -> Any:
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self) -> dict[str, float]:
        """Seconds per part since the last reset (waits for the device on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        total: defaultdict[str, float] = defaultdict(float)
        for part, start, end in self._spans:
            total[part] += start.elapsed_time(end) / 1000 if self.device.type == "cuda" else end - start
        return dict(total)

    def reset(self) -> None:
        self._spans = []
