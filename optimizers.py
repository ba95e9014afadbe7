"""The optimizers train.py can build, with their parameter groups: Sophia-G / Sophia-H (sophia.py)
and the baselines AdamW (torch) and Lion."""
import torch

from sophia import SophiaG, SophiaH

OPTIMIZERS = ("sophiag", "sophiah", "adamw", "lion")
FUSED = ("sophiag", "sophiah", "adamw")  # those with a fused step (TrainConfig.fused_optimizer)


class Lion(torch.optim.Optimizer):
    """Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), a baseline:

        update = sign(beta1 * m + (1 - beta1) * g)
        p      <- p * (1 - lr * weight_decay) - lr * update
        m      <- beta2 * m + (1 - beta2) * g
    """

    def __init__(self, params, lr=1e-4, betas=(0.9, 0.99), weight_decay=0.0):
        if lr < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Lion needs lr >= 0, weight_decay >= 0, betas in [0, 1); got {lr}, {weight_decay}, {betas}")
        super().__init__(params, dict(lr=lr, betas=betas, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
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


def make_optimizer(cfg, model, device):
    """Weight decay on matrices and embeddings (>= 2-D) only, never on biases and norm gains.
    fused_optimizer: None leaves each optimizer's default step, fused (torch's kernel) only for
    AdamW on CUDA; Sophia's fused step is a torch.compile'd kernel, not yet measured on GPUs."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    betas = (cfg.beta1, cfg.beta2)
    if cfg.optimizer_name == "adamw":
        fused = device.type == "cuda" if cfg.fused_optimizer is None else cfg.fused_optimizer
        return torch.optim.AdamW(groups, lr=cfg.learning_rate, betas=betas, fused=fused, foreach=not fused)
    if cfg.optimizer_name == "lion":
        return Lion(groups, lr=cfg.learning_rate, betas=betas)
    sophia = SophiaG if cfg.optimizer_name == "sophiag" else SophiaH
    return sophia(groups, lr=cfg.learning_rate, betas=betas, rho=cfg.rho, fused=bool(cfg.fused_optimizer))
