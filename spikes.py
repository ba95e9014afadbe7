"""Loss spikes: an outlier skip of the update, and a rollback when they keep coming (docs/reliability.md).
The verdict is computed on the device and rides on the step's one read-back: no extra host sync."""

import math
import typing

import torch
from torch import Tensor

if typing.TYPE_CHECKING:
    from train_config import TrainConfig

# The floor of the logs' std: without noise the spread is rounding, and any change an infinite z (docs/reliability.md)
STD_FLOOR = 1e-4
# what each window holds, as named in the metrics (spike/<name>_mean, _std, _z)
SIGNALS = {"step": ("loss", "grad_norm"), "hessian": ("estimator_norm",)}


class Verdict(typing.NamedTuple):
    """Judged values, with the window's geometric mean, its logs' std and each value's log-scale z (NaN under 2)."""

    outlier: bool
    value: list[float]
    mean: list[float]
    std: list[float]
    z: list[float]


class Window:
    """The logarithms of the last `size` accepted values of `signals` quantities, float64 on the device: a
    ring buffer (values[:, count % size] is the next slot) and the number of values ever accepted."""

    def __init__(self, signals: int, size: int, device: torch.device):
        self.values = torch.zeros(signals, size, dtype=torch.float64, device=device)
        self.count = torch.zeros((), dtype=torch.int64, device=device)
        self.slots = torch.arange(size, device=device)

    @torch.no_grad()
    def judge(self, x: Tensor, z_max: float, warmup: int) -> Tensor:
        """[outlier, x..., geometric mean..., std..., z...] of the positive values x (one per signal), on the
        device; x enters the window unless it is an outlier or its logarithm is not finite."""
        size = self.values.shape[1]
        n = self.count.clamp(max=size)
        filled = self.slots < n
        log = x.log()
        mean = (self.values * filled).sum(1) / n
        std = (((self.values - mean[:, None]).square() * filled).sum(1) / (n - 1)).sqrt()
        z = (log - mean) / std.clamp(min=STD_FLOOR)
        finite = torch.isfinite(log).all()  # a non-finite value is the non-finite guard's, never an outlier
        outlier = finite & (self.count >= warmup) & (z > z_max).any()
        accept = finite & ~outlier
        slot = (self.count % size).view(1)
        self.values.index_copy_(1, slot, torch.where(accept, log, self.values.index_select(1, slot).view(-1))[:, None])
        self.count += accept
        return torch.cat([outlier.view(1).double(), x, mean.exp(), std, z])

    def state_dict(self) -> dict[str, Tensor]:
        return {"values": self.values.to("cpu", copy=True), "count": self.count.to("cpu", copy=True)}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """A saved window, slot for slot; one of another size keeps its newest values that fit."""
        values, count = state["values"], int(state["count"])
        size, saved = self.values.shape[1], values.shape[1]
        if saved != size:
            oldest_first = values.roll(-(count % saved), 1) if count >= saved else values[:, :count]
            count = min(oldest_first.shape[1], size)
            values = torch.zeros(values.shape[0], size, dtype=values.dtype)
            values[:, :count] = oldest_first[:, oldest_first.shape[1] - count :]
        self.values.copy_(values)
        self.count.fill_(count)


class SpikeGuard:
    """A run's spike detection (every rank makes one): a Window per SIGNALS entry, recent verdicts and skips."""

    def __init__(self, cfg: "TrainConfig", device: torch.device):
        self.cfg = cfg
        self.on = cfg.spike_z > 0
        self.windows = {name: Window(len(signals), cfg.spike_window, device) for name, signals in SIGNALS.items()}
        self.verdicts: dict[str, Verdict] = {}
        self.skips: list[int] = []

    def judge(self, name: str, values: list[Tensor]) -> Tensor:
        """The device-side verdict on `values` (see Window.judge), to read back with the caller's one host sync."""
        x = torch.stack([v.to(torch.float64) for v in values])
        return self.windows[name].judge(x, self.cfg.spike_z, self.cfg.spike_warmup)

    def read(self, name: str, judged: list[float]) -> Verdict:
        """The verdict from judge()'s values as read back to the host; kept for the next metrics row."""
        k = len(SIGNALS[name])
        verdict = Verdict(judged[0] > 0, *(judged[1 + i * k : 1 + (i + 1) * k] for i in range(4)))
        self.verdicts[name] = verdict
        return verdict

    def describe(self, name: str) -> str:
        """The last verdict of window `name` for a log line: 'loss 9.123 (z 41.2: 4.3x the window's 2.1, ...'."""
        v = self.verdicts[name]
        return ", ".join(
            f"{signal.replace('_', ' ')} {x:.4g} (z {z:.1f}: {x / m:.3g}x the window's {m:.4g}, spread {100 * s:.2g}%)"
            for signal, x, m, s, z in zip(SIGNALS[name], v.value, v.mean, v.std, v.z)
        )

    def outlier(self, name: str) -> bool:
        return self.on and name in self.verdicts and self.verdicts[name].outlier

    def skipped(self, it: int) -> bool:
        """Record an outlier skip at iteration `it`; whether a rollback is due."""
        self.skips = [s for s in self.skips if s > it - self.cfg.spike_rollback_window] + [it]
        return 0 < self.cfg.spike_rollback_skips <= len(self.skips)

    def row(self) -> dict[str, float]:
        """spike/<signal>_mean, _std and _z of the verdicts read since the last row, once their window held 2 values."""
        out: dict[str, float] = {}
        for name, verdict in self.verdicts.items():
            for i, signal in enumerate(SIGNALS[name]):
                if math.isfinite(verdict.std[i]):
                    for stat in ("mean", "std", "z"):
                        out[f"spike/{signal}_{stat}"] = getattr(verdict, stat)[i]
        self.verdicts = {}
        return out

    def state_dict(self) -> dict:
        """The windows and the recent skips, on the CPU (what a checkpoint carries)."""
        return {"windows": {name: w.state_dict() for name, w in self.windows.items()}, "skips": list(self.skips)}

    def load_state_dict(self, state: dict | None) -> None:
        """A checkpoint's windows and skips; None (a checkpoint without them) empties them."""
        for name, window in self.windows.items():
            if state is None:
                window.values.zero_()
                window.count.zero_()
            else:
                window.load_state_dict(state["windows"][name])
        self.skips = [] if state is None else list(state["skips"])
