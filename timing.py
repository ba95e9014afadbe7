"""Where a training step's time goes (StepTimer, switched on by scripts/bench/bench_train.py), and a device's MFU.
On CUDA the parts are timed with events on the device timeline, so a part is also charged the time the device sat
idle waiting for the host: a stall shows up where it happens."""

import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch

# Dense bf16 tensor-core peak per device (torchtitan's table), first match of the device name wins.
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
    return flops_per_token * tokens / seconds / world_size / peak if peak else None


class StepTimer:
    def __init__(self, device: torch.device, enabled: bool = False):
        self.device, self.enabled = device, enabled
        self._open = False  # a part is being timed: the parts opened inside it are charged to it
        self._spans: list[tuple[str, Any, Any]] = []  # (part, start, end): perf_counter seconds, or CUDA events

    def __call__(self, part: str) -> AbstractContextManager:
        return self._timed(part) if self.enabled and not self._open else nullcontext()

    @contextmanager
    def _timed(self, part: str) -> Iterator[None]:
        self._open, start = True, self._mark()
        try:
            yield
        finally:
            self._spans.append((part, start, self._mark()))
            self._open = False

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
