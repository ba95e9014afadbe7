"""Where a training step's time goes: data loading, forward+backward, the optimizer step and
Sophia's Hessian refresh. train.py marks those parts; scripts/bench/bench_train.py switches the timer on.

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
from contextlib import contextmanager, nullcontext

import torch


class StepTimer:

    def __init__(self, device: torch.device, enabled: bool = False):
        self.device = device
        self.enabled = enabled
        self._depth = 0
        self._spans = []  # (part, start, end): perf_counter seconds, or CUDA events

    def __call__(self, part: str):
        return self._timed(part) if self.enabled else nullcontext()

    @contextmanager
    def _timed(self, part):
        self._depth += 1
        start = self._mark() if self._depth == 1 else None
        try:
            yield
        finally:
            if self._depth == 1:
                self._spans.append((part, start, self._mark()))
            self._depth -= 1

    def _mark(self):
        if self.device.type == "cuda":
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            return event
        return time.perf_counter()

    def seconds(self) -> dict[str, float]:
        """Seconds per part since the last reset (waits for the device on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        total = defaultdict(float)
        for part, start, end in self._spans:
            total[part] += start.elapsed_time(end) / 1000 if self.device.type == "cuda" else end - start
        return dict(total)

    def reset(self):
        self._spans = []
