"""Per-group optimizer telemetry of logged steps (the `group/<g>/...` metrics of docs/training.md): only they pay,
a copy of the parameters before the step (a rank's shards under FSDP), a few reductions and under FSDP an all-reduce."""

from typing import cast

import torch
import torch.distributed as torch_dist
from torch import Tensor
from torch.distributed.tensor import DTensor

from sophia import clipped

# the token embedding is also the LM head (tied), so the head has no group of its own
GROUPS = ("tok_emb", "pos_emb", "attn_qkv", "attn_out", "mlp_in", "mlp_out", "ln")
PREFIX = "group/"
_BY_NAME = (
    ("transformer.wte.", "tok_emb"),
    ("transformer.wpe.", "pos_emb"),
    (".attn.c_attn.", "attn_qkv"),
    (".attn.c_proj.", "attn_out"),
    (".mlp.c_fc.", "mlp_in"),
    (".mlp.c_proj.", "mlp_out"),
    (".ln_", "ln"),  # ln_1, ln_2 and ln_f
)


def group_of(name: str) -> str:
    """The group of a GPT parameter, from its name (e.g. transformer.h.3.mlp.c_fc.weight -> mlp_in)."""
    for part, group in _BY_NAME:
        if part in name:
            return group
    raise ValueError(f"parameter {name!r} belongs to no telemetry group: add its name to telemetry._BY_NAME")


def _local(t: Tensor) -> Tensor:
    return t.to_local() if isinstance(t, DTensor) else t


class Telemetry:
    """Per-group values of a model and optimizer; every rank calls both on a logged step (FSDP: measure all-reduces)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, sophia: bool):
        named = list(model.named_parameters())
        self.params = [p for _, p in named]
        self.groups = [GROUPS.index(group_of(n)) for n, _ in named]
        # built once: no host-to-device copy per step
        self.group_index = torch.tensor(self.groups, device=_local(self.params[0]).device)
        self.optimizer, self.sophia = optimizer, sophia
        self.sharded = any(isinstance(p, DTensor) for p in self.params)

    def snapshot(self) -> list[Tensor]:
        """The weights before the optimizer step (this rank's shards)."""
        return [_local(p).detach().clone() for p in self.params]

    @torch.no_grad()
    def measure(self, before: list[Tensor]) -> dict[str, float]:
        """The groups' values after the step that followed snapshot() (`before`); one host sync."""
        # per group, on the device: squared update, squared weight, clipped coordinates, sum of h
        sums = torch.zeros(len(GROUPS), 4, dtype=torch.float64, device=before[0].device)
        numel = [0] * len(GROUPS)  # coordinates per group, all ranks together (a DTensor's numel is global)
        hyper = {id(p): group for group in self.optimizer.param_groups for p in group["params"]}
        new = [_local(p).detach() for p in self.params]
        update, weight = torch._foreach_norm(torch._foreach_sub(new, before)), torch._foreach_norm(before)
        for col, norms in enumerate([update, weight]):
            sums[:, col].index_add_(0, self.group_index, torch.stack(norms).double().square())
        for p, g in zip(self.params, self.groups):
            numel[g] += p.numel()
            state = self.optimizer.state.get(p, {})
            if "hessian" in state:
                m, h = _local(state["exp_avg"]), _local(state["hessian"])
                sums[g, 2] += torch.count_nonzero(clipped(m, h, hyper[id(p)]["rho"], hyper[id(p)]["eps"]))
                sums[g, 3] += h.sum()
        if self.sharded:
            torch_dist.all_reduce(sums, group=cast(DTensor, self.params[0]).device_mesh.get_group())
        values = sums.tolist()
        out: dict[str, float] = {}
        for name, n, (update_sq, weight_sq, clips, hessian_sum) in zip(GROUPS, numel, values):
            if not n:
                continue
            out[f"{PREFIX}{name}/update_ratio"] = (update_sq / weight_sq) ** 0.5 if weight_sq else float("nan")
            if self.sophia:
                out[f"{PREFIX}{name}/win_rate"] = 1 - clips / n
                out[f"{PREFIX}{name}/hessian_mean"] = hessian_sum / n
        if self.sophia:
            out["train/win_rate"] = 1 - sum(v[2] for v in values) / sum(numel)
            out["optim/hessian_norm"] = sum(v[3] for v in values)
        return out
