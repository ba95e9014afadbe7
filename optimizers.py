"""The optimizers train.py can build, with their parameter groups: Sophia-G / Sophia-H (sophia.py)
and the baselines AdamW (torch), Lion and Muon (torch's, with AdamW for the non-matrix parameters)."""

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

import torch
from torch.distributed.tensor import DTensor, distribute_tensor

# torch.optim.Muon's own Newton-Schulz iteration and per-matrix lr, reused by GatheredMuon
from torch.optim._muon import _adjust_lr, _zeropower_via_newtonschulz
from torch.optim.optimizer import ParamsT

from sophia import SophiaG, SophiaH

if TYPE_CHECKING:
    from model import GPT
    from train_config import TrainConfig

Closure = Callable[[], float] | None


def evaluate_closure(closure: Closure) -> float | None:
    """The loss of step()'s optional closure, computed with gradients on (torch.optim's convention)."""
    if closure is None:
        return None
    with torch.enable_grad():
        return closure()


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), a baseline:

    update = sign(beta1 * m + (1 - beta1) * g)
    p      <- p * (1 - lr * weight_decay) - lr * update
    m      <- beta2 * m + (1 - beta2) * g
    """

    def __init__(
        self, params: ParamsT, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.99), weight_decay: float = 0.0
    ) -> None:
        if lr < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lion needs lr, weight_decay >= 0 and betas in [0, 1); got {lr}, {weight_decay}, {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Closure = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            grads = [p.grad for p in params]
            for p in params:
                if "exp_avg" not in self.state[p]:
                    self.state[p]["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            exp_avgs = [self.state[p]["exp_avg"] for p in params]
            beta1, beta2 = group["betas"]
            update = torch._foreach_lerp(exp_avgs, grads, 1 - beta1)
            torch._foreach_sign_(update)
            torch._foreach_mul_(params, 1 - group["lr"] * group["weight_decay"])
            torch._foreach_add_(params, update, alpha=-group["lr"])
            torch._foreach_lerp_(exp_avgs, grads, 1 - beta2)
        return loss


class MuonWithAdamW(torch.optim.Optimizer):
    """Muon for the hidden weight matrices and AdamW for every other parameter (embeddings, LM head, norm
    gains, biases: KellerJordan/Muon's README), as one optimizer for the loop, the GradScaler and
    checkpoints. `param_groups` is Muon's groups then AdamW's, the very dicts the two parts read (so
    setting a group's lr reaches them); `state` is one dict that both parts fill."""

    def __init__(self, muon: torch.optim.Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw
        super().__init__(muon.param_groups + adamw.param_groups, {})
        self._share()

    def _share(self) -> None:
        """Point both parts at this optimizer's groups and state (load_state_dict replaces them)."""
        n = len(self.muon.param_groups)
        self.muon.param_groups, self.adamw.param_groups = self.param_groups[:n], self.param_groups[n:]
        self.muon.state = self.adamw.state = self.state

    @torch.no_grad()
    def step(self, closure: Closure = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        self.muon.step()
        self.adamw.step()
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self._share()


class GatheredMuon(torch.optim.Muon):
    """torch.optim.Muon for FSDP's sharded (DTensor) matrices, at one all-gather per matrix per step (on
    DTensors torch.optim.Muon pays a collective for nearly every operation, docs/muon.md). The momentum runs
    on the local shards; the Nesterov update is gathered and orthogonalised whole by torch's Newton-Schulz
    (each rank's rows alone would give another update), and each rank keeps its rows."""

    @torch.no_grad()
    def step(self, closure: Closure = None) -> float | None:  # type: ignore[override]
        loss = evaluate_closure(closure)
        for group in self.param_groups:
            lists: tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]] = ([], [], [])
            self._init_group(group, *lists)  # fills params, grads, momentum buffers
            for param, grad, buf in zip(*lists):
                assert isinstance(param, DTensor), "GatheredMuon is for FSDP's sharded parameters"
                buf.lerp_(grad, 1 - group["momentum"])
                update = grad.lerp(buf, group["momentum"]) if group["nesterov"] else buf
                # torch builds whose Muon has a use_addmm option take it here too (a private function)
                addmm = (group["use_addmm"],) if "use_addmm" in group else ()
                ns = (group["ns_coefficients"], group["ns_steps"], group["eps"], *addmm)
                whole = _zeropower_via_newtonschulz(cast(DTensor, update).full_tensor(), *ns)
                rows = distribute_tensor(whole, param.device_mesh, param.placements, src_data_rank=None)  # local slice
                param.mul_(1 - group["lr"] * group["weight_decay"])
                param.add_(rows, alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], param.shape))
        return loss


def hidden_matrices(model: "GPT") -> list[torch.nn.Parameter]:
    """The parameters Muon trains: the 2-D weights inside the transformer blocks (attention qkv and
    output, MLP in and out), not the embeddings / tied LM head, norm gains or biases."""
    return [p for p in model.transformer.h.parameters() if p.requires_grad and p.dim() == 2]


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Every group's lr = lr times its `lr_scale` (its peak lr / learning_rate; 1 when absent), so
    that the schedule drives groups with different peak lrs, like Muon's AdamW part."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def use_fused(fused_optimizer: bool | None, device: torch.device) -> bool:
    """The `fused_optimizer` key resolved: None means the fused step on CUDA (AdamW's torch kernel,
    Sophia's compiled one: each a single pass over a parameter's p, g and state), else the foreach one."""
    return device.type == "cuda" if fused_optimizer is None else fused_optimizer


def decay_groups(params: list[torch.nn.Parameter], weight_decay: float, **extra: float) -> list[dict[str, Any]]:
    """Weight decay on matrices and embeddings (>= 2-D) only, never on biases and norm gains."""
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay, **extra},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0, **extra},
    ]


def make_optimizer(cfg: "TrainConfig", model: "GPT", device: torch.device) -> torch.optim.Optimizer:
    """cfg's optimizer over the model's trainable parameters (AdamW's and Sophia's step fused as `use_fused` says)."""
    params = [p for p in model.parameters() if p.requires_grad]
    betas, fused, lr = (cfg.beta1, cfg.beta2), use_fused(cfg.fused_optimizer, device), cfg.learning_rate
    if cfg.optimizer_name == "muon":
        matrices = hidden_matrices(model)
        muon_class = GatheredMuon if isinstance(matrices[0], DTensor) else torch.optim.Muon  # DTensors: FSDP's
        muon = muon_class(  # with Nesterov momentum, torch's default
            matrices,
            lr=lr,
            weight_decay=cfg.weight_decay,
            momentum=cfg.muon_momentum,
            adjust_lr_fn=cfg.muon_adjust_lr_fn,
        )
        rest = [p for p in params if id(p) not in {id(m) for m in matrices}]
        groups = decay_groups(rest, cfg.muon_adamw_weight_decay, lr_scale=cfg.muon_adamw_lr / lr)
        adamw = torch.optim.AdamW(groups, lr=cfg.muon_adamw_lr, betas=betas, fused=fused, foreach=not fused)
        return MuonWithAdamW(muon, adamw)
    groups = decay_groups(params, cfg.weight_decay)
    if cfg.optimizer_name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused, foreach=not fused)
    if cfg.optimizer_name == "lion":
        return Lion(groups, lr=lr, betas=betas)
    sophia_class = SophiaG if cfg.optimizer_name == "sophiag" else SophiaH
    return sophia_class(groups, lr=lr, betas=betas, rho=cfg.rho, fused=fused)
