"""Sophia: Second-order Clipped Stochastic Optimization (Liu et al. 2023), Sophia-G and Sophia-H.

    from sophia import SophiaG, gnb_loss
    optimizer = SophiaG(model.parameters(), lr=6e-4, rho=0.05, weight_decay=0.2)
    ...                                    # every step: backward of the training loss, then
    optimizer.step()
    ...                                    # every k steps: backward of gnb_loss(logits), then
    optimizer.update_hessian(num_tokens=N) # N = number of predictions in that batch
    optimizer.stats()                      # {"win_rate", "hessian_norm"} as device tensors

Laid out like torch/optim/adamw.py: validated hyperparameters, state created in one place, a functional core
(`sophia`) with per-tensor, multi-tensor (torch._foreach_*) and torch.compile'd fused paths.
"""

import functools
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple, cast

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor
from torch.distributed.tensor import DTensor
from torch.optim.optimizer import Optimizer, ParamsT

TL = list[Tensor]
Lists = tuple[TL, TL, TL, TL, TL]  # params, grads, exp_avgs, hessians, state_steps
__all__ = ["SophiaG", "SophiaH", "by_device_and_dtype", "clipped", "gnb_loss", "hutchinson", "sophia"]

# The multi-tensor step walks the parameters in buckets of at most this many elements, its two temporaries in
# one reused scratch buffer (a step allocates nothing parameter-sized). On CPU a bucket stays in the cache across
# the step's passes (the fastest size measured, docs/performance.md); elsewhere it only bounds the scratch memory.
_CPU_BUCKET_NUMEL = 1 << 18
_BUCKET_NUMEL = 1 << 24
# gnb_loss samples its labels a few rows of logits at a time, its temporaries at most this many elements: on CPU
# the allocator recycles chunks, while a whole (N, V) is mapped and page-faulted anew every call; on a GPU each
# chunk costs kernel launches, so chunks are larger (docs/performance.md). The labels are the same either way.
_CPU_SAMPLE_CHUNK_NUMEL = 1 << 22
_SAMPLE_CHUNK_NUMEL = 1 << 26


class _Sophia(Optimizer):
    """Shared machinery of SophiaG and SophiaH: everything except how the Hessian EMA is fed."""

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.965, 0.99),
        rho: float = 0.04,
        weight_decay: float = 0.1,
        eps: float = 1e-15,
        *,
        maximize: bool = False,
        foreach: bool | None = None,
        fused: bool | None = None,
    ):
        if foreach and fused:
            raise ValueError("foreach=True and fused=True are exclusive; pick one (or leave foreach=None)")
        paths = dict(maximize=maximize, foreach=foreach, fused=fused)
        super().__init__(params, dict(lr=lr, betas=betas, rho=rho, weight_decay=weight_decay, eps=eps, **paths))

    def add_param_group(self, param_group: dict) -> None:
        _check_hyperparameters(type(self).__name__, {**self.defaults, **param_group})
        super().add_param_group(param_group)

    def _state(self, p: Tensor) -> dict:
        state = self.state[p]
        if not state:
            if torch.is_complex(p):
                raise RuntimeError(f"{type(self).__name__} takes no complex parameters; optimize torch.view_as_real(p)")
            state["step"] = torch.tensor(0.0)
            state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["hessian"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        return state

    def _params_with_grad(self, group: dict) -> tuple[TL, TL]:
        params = [p for p in group["params"] if p.grad is not None]
        grads = [p.grad for p in params]
        if any(g.is_sparse for g in grads):
            raise RuntimeError(f"{type(self).__name__} takes no sparse gradients: use nn.Embedding(..., sparse=False)")
        return params, grads

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        """Perform one optimization step from each parameter's `.grad` (parameters without one are skipped)."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            params, grads = self._params_with_grad(group)
            if not params:
                continue
            states = [self._state(p) for p in params]
            exp_avgs, hessians, steps = ([s[k] for s in states] for k in ("exp_avg", "hessian", "step"))
            hyper = {k: group[k] for k in ("foreach", "fused", "lr", "rho", "weight_decay", "eps", "maximize")}
            p, g, m, h = map(_local, (params, grads, exp_avgs, hessians))
            sophia(p, g, m, h, steps, beta1=group["betas"][0], **hyper)
        return loss

    def _update_hessians(self, group: dict, params: TL, estimates: TL, num_tokens: float | None) -> None:
        hessians = [self._state(p)["hessian"] for p in params]
        fn = _single_tensor_update_hessian if group["foreach"] is False else _multi_tensor_update_hessian
        fn(_local(hessians), _local(estimates), beta2=group["betas"][1], num_tokens=num_tokens)

    @torch.no_grad()
    def stats(self) -> dict[str, Tensor]:
        """The state's clip and curvature statistics as 0-dim tensors on the parameters' device: "win_rate", the
        fraction of coordinates that `clipped` leaves unclipped, and "hessian_norm", the L1 norm of h (docs/sophia.md).
        Computed here, not in the step: call it when logging. Raises RuntimeError before the first `step()`. With
        FSDP2 (DTensor) parameters one all-reduce sums the shards: every rank must call it."""
        totals, numel, shard_group = None, 0, None
        for group in self.param_groups:
            for p in group["params"]:
                state = self.state.get(p)
                if not state:
                    continue
                if isinstance(p, DTensor):
                    shard_group = p.device_mesh.get_group()
                m, h = _local([state["exp_avg"], state["hessian"]])
                n_clipped = torch.count_nonzero(clipped(m, h, group["rho"], group["eps"]))
                part = torch.stack([n_clipped.double(), h.sum().double()])
                totals = part if totals is None else totals + part.to(totals.device)
                numel += p.numel()  # a DTensor's numel is the whole tensor's
        if totals is None:
            raise RuntimeError("stats() describes the optimizer state; call step() first")
        if shard_group is not None:
            dist.all_reduce(totals, group=shard_group)
        return {"win_rate": 1 - totals[0] / numel, "hessian_norm": totals[1]}


class SophiaG(_Sophia):
    r"""Sophia-G: Sophia with the Gauss-Newton-Bartlett (GNB) Hessian estimator (Liu et al. 2023).

    Per parameter tensor, every `step()` (g = p.grad, negated if maximize):

        m <- beta1 * m + (1 - beta1) * g
        p <- p * (1 - lr * weight_decay)                        # decoupled weight decay
        p <- p - lr * clamp(m / (rho * h + eps), -1, 1)

    so apart from weight decay no coordinate moves by more than lr. Every k steps (k = 10 in the
    paper), backpropagate `gnb_loss(logits)` of a batch of N predictions (tokens) and call
    `update_hessian(num_tokens=N)`, which does, with g the resulting `.grad`:

        h <- beta2 * h + (1 - beta2) * N * g * g

    N * g * g is an unbiased estimate of the diagonal of the Gauss-Newton matrix of the mean loss, so
    rho means the same for any batch size. State per parameter: `step`, `exp_avg` (m), `hessian` (h).
    It follows the official `SophiaG.step(bs=N)` to float rounding; our `hessian` is the official one times N.

    Args:
        params: iterable of parameters or of param-group dicts.
        lr: largest per-coordinate step, the paper's eta. Official GPT-2 small: 6e-4.
        betas: (beta1, beta2), the EMA coefficients of m and h, each in [0, 1).
        rho: scale of the Hessian in the clip ratio, the paper's gamma, >= 0. Official GPT-2 small: 0.05.
        weight_decay: decoupled weight decay coefficient, >= 0. Official GPT-2 small: 0.2.
        eps: added to the denominator (the official code's), >= 0.
        maximize: maximize the objective instead of minimizing it.
        foreach: None/True: multi-tensor path (torch._foreach_*, grouped by device and dtype); False:
            per-tensor loop. The two agree bit for bit for fp32/fp64 parameters.
        fused: True: one torch.compile'd kernel per parameter (compiled on the first step). Matches
            the other paths to float rounding. docs/performance.md compares the three paths' times.
    """

    @torch.no_grad()
    def update_hessian(self, num_tokens: float) -> None:
        """h <- beta2 * h + (1 - beta2) * num_tokens * g * g, g the `.grad` of `gnb_loss` averaged over
        `num_tokens` predictions (for DDP: after the all-reduce, num_tokens counting every rank's)."""
        number = isinstance(num_tokens, (int, float)) and not isinstance(num_tokens, bool)
        if not (number and math.isfinite(num_tokens) and num_tokens > 0):
            raise ValueError(f"num_tokens must be a positive number (the GNB loss's predictions), got {num_tokens!r}")
        for group in self.param_groups:
            params, grads = self._params_with_grad(group)
            if params:
                self._update_hessians(group, params, grads, num_tokens)


class SophiaH(_Sophia):
    r"""Sophia-H: Sophia with the Hutchinson Hessian-diagonal estimator.

    `step()` is SophiaG's. Every k steps, pass `hutchinson(loss, params)` (u * (H u) for a Rademacher u)
    to `update_hessian(params, estimates)`, which keeps only its positive part so that h stays >= 0:

        h <- beta2 * h + (1 - beta2) * max(u * (H u), 0)

    It estimates the Hessian of the mean loss, the scale of SophiaG's N * g * g, so rho carries over. It
    needs double backward, which torch's fused SDPA kernels (on CPU too) and torch.compile'd modules lack:
    run that forward pass under `sdpa_kernel(SDPBackend.MATH)` on the uncompiled module (for DDP, the raw
    module; all-reduce the estimates yourself before `update_hessian`).

    Args: as SophiaG.
    """

    @torch.no_grad()
    def update_hessian(self, params: Sequence[Tensor], estimates: Sequence[Tensor]) -> None:
        """h <- beta2 * h + (1 - beta2) * max(estimate, 0) for each (param, estimate) pair: params of this
        optimizer (any order, any subset), estimates e.g. `hutchinson(loss, params)` (averaged over ranks)."""
        params, estimates = list(params), list(estimates)
        if len(params) != len(estimates):
            raise ValueError(f"{len(params)} params, {len(estimates)} estimates: pass one estimate per parameter")
        group_of = {id(p): i for i, group in enumerate(self.param_groups) for p in group["params"]}
        for p, e in zip(params, estimates):
            if id(p) not in group_of:
                raise ValueError("update_hessian got a tensor that is not a parameter of this optimizer")
            if e.shape != p.shape:
                raise ValueError(f"estimate of shape {tuple(e.shape)} for a parameter of shape {tuple(p.shape)}")
        for i, group in enumerate(self.param_groups):
            pairs = [(p, e) for p, e in zip(params, estimates) if group_of[id(p)] == i]
            if pairs:
                self._update_hessians(group, [p for p, _ in pairs], [e for _, e in pairs], None)


def _check_hyperparameters(name: str, group: dict) -> None:
    for key in ("lr", "rho", "weight_decay", "eps"):
        if not group[key] >= 0:
            raise ValueError(f"{name}: invalid {key}={group[key]!r}; pass a number >= 0")
    betas = group["betas"]
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise ValueError(f"{name}: invalid betas={betas!r}; pass (beta1, beta2) each in [0, 1), e.g. (0.965, 0.99)")


def _local(tensors: list[Tensor]) -> list[Tensor]:
    """Each DTensor's local shard (FSDP2 shards parameters, gradients and state), other tensors as they are: the
    update is elementwise, so each rank updates its own shards in place, as unsharded, with no communication."""
    return [t.to_local() if isinstance(t, DTensor) else t for t in tensors]


def clipped(exp_avg: Tensor, hessian: Tensor, rho: float, eps: float) -> Tensor:
    """The coordinates that Sophia's clamp clips, |m / (rho * h + eps)| >= 1, computed as the step
    computes the ratio (a boolean tensor of the parameter's shape)."""
    ratio = hessian.mul(rho).add_(eps)  # one buffer, worked in place
    return torch.div(exp_avg, ratio, out=ratio).abs_() >= 1


def gnb_loss(logits: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """The Gauss-Newton-Bartlett loss: mean cross-entropy of logits (..., V) against labels y_hat ~ softmax(logits)
    sampled per position (in float32, no gradient through the sampling). Backpropagate it, then call
    `SophiaG.update_hessian(num_tokens=N)`, N = logits[..., 0].numel() summed over ranks and micro-batches.
    generator: a torch.Generator on the logits' device, for reproducible sampling."""
    log_probs = F.log_softmax(logits.float(), dim=-1).view(-1, logits.size(-1))  # (N, V)
    with torch.no_grad():
        # Inverse-CDF sampling: one uniform per position. Same distribution as torch.multinomial, and
        # faster at GPT-2's vocabulary, where multinomial dominated the refresh (docs/performance.md).
        u = torch.rand(log_probs.size(0), 1, device=log_probs.device, generator=generator)  # (N, 1)
        rows = _sample_rows(log_probs.size(1), log_probs.device)
        y_hat = torch.cat([_sample(chunk, u_chunk) for chunk, u_chunk in zip(log_probs.split(rows), u.split(rows))])
    return F.nll_loss(log_probs, y_hat)


def _sample_rows(vocab: int, device: torch.device) -> int:
    """How many rows of (N, vocab) log-probabilities gnb_loss samples at a time on `device`."""
    return max(1, (_CPU_SAMPLE_CHUNK_NUMEL if device.type == "cpu" else _SAMPLE_CHUNK_NUMEL) // vocab)


def _sample(log_probs: Tensor, u: Tensor) -> Tensor:
    """Row i's label: the first index where the cumulative probability exceeds u[i] times the total."""
    cdf = log_probs.exp().cumsum_(dim=-1)  # (n, V)
    return torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1).clamp_(max=cdf.size(-1) - 1)  # (n,)


def hutchinson(loss: Tensor, params: Sequence[Tensor], generator: torch.Generator | None = None) -> list[Tensor]:
    """Hutchinson estimates u * (H u) of the diagonal of the Hessian H of `loss`, one per parameter: u is one
    Rademacher (+-1) vector over all params, and the mean of u * (H u) over u is diag(H). Parameters that `loss`
    does not depend on (to second order) get zeros. Needs double backward: see SophiaH for SDPA and torch.compile.
    generator: a torch.Generator on the parameters' device, for reproducible u."""
    params = list(params)
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)
    us = [torch.empty_like(p).bernoulli_(0.5, generator=generator).mul_(2).sub_(1) for p in params]
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
    hvps: Sequence[Tensor | None] = [None] * len(params)
    if live:
        outputs, directions = [grads[i] for i in live], [us[i] for i in live]
        hvps = torch.autograd.grad(outputs, params, grad_outputs=directions, allow_unused=True)
    return [torch.zeros_like(p) if hv is None else u * hv for p, u, hv in zip(params, us, hvps)]


def sophia(
    params: TL,
    grads: TL,
    exp_avgs: TL,
    hessians: TL,
    state_steps: TL,
    *,
    foreach: bool | None = None,
    fused: bool | None = None,
    beta1: float,
    lr: float,
    rho: float,
    weight_decay: float,
    eps: float,
    maximize: bool,
) -> None:
    """Functional Sophia step (see SophiaG for the rule), in place on params, exp_avgs and state_steps."""
    fn = _fused_sophia if fused else _single_tensor_sophia if foreach is False else _multi_tensor_sophia
    fn((params, grads, exp_avgs, hessians, state_steps), _Hyper(beta1, lr, rho, weight_decay, eps, maximize))


class _Hyper(NamedTuple):
    beta1: float
    lr: float
    rho: float
    weight_decay: float
    eps: float
    maximize: bool


def _single_tensor_sophia(lists: Lists, hp: _Hyper) -> None:
    for param, grad, exp_avg, hessian, step in zip(*lists):
        step += 1
        if hp.weight_decay != 0:
            param.mul_(1 - hp.lr * hp.weight_decay)
        exp_avg.lerp_(-grad if hp.maximize else grad, 1 - hp.beta1)
        ratio = torch.mul(hessian, hp.rho).add_(hp.eps)  # rho * h + eps
        torch.div(exp_avg, ratio, out=ratio).clamp_(-1, 1)
        param.add_(ratio, alpha=-hp.lr)


def _multi_tensor_sophia(lists: Lists, hp: _Hyper) -> None:
    # The same elementwise operations as _single_tensor_sophia, in the same order (so the two paths agree
    # bit for bit), applied bucket by bucket with the temporaries in a reused scratch buffer.
    for device, (device_params, device_grads, device_exp_avgs, device_hessians, steps) in by_device_and_dtype(lists):
        torch._foreach_add_(steps, 1)
        if hp.maximize:
            device_grads = list(torch._foreach_neg(device_grads))
        max_numel = _CPU_BUCKET_NUMEL if device.type == "cpu" else _BUCKET_NUMEL
        buckets = _buckets([device_params, device_grads, device_exp_avgs, device_hessians], max_numel)
        if not buckets:
            continue
        scratch = device_params[0].new_empty(2, max(sum(c[0].numel() for c in b) for b in buckets))
        for bucket in buckets:
            bucket_params, bucket_grads, bucket_exp_avgs, bucket_hessians = (list(ts) for ts in zip(*bucket))
            sizes = [p.numel() for p in bucket_params]
            denom, ratio = scratch[:, : sum(sizes)]
            denoms = [d.view_as(p) for d, p in zip(denom.split(sizes), bucket_params)]
            ratios = [r.view_as(p) for r, p in zip(ratio.split(sizes), bucket_params)]
            if hp.weight_decay != 0:
                torch._foreach_mul_(bucket_params, 1 - hp.lr * hp.weight_decay)
            torch._foreach_lerp_(bucket_exp_avgs, bucket_grads, 1 - hp.beta1)
            torch._foreach_copy_(denoms, bucket_hessians)
            denom.mul_(hp.rho).add_(hp.eps)
            torch._foreach_copy_(ratios, bucket_exp_avgs)
            ratio.div_(denom).clamp_(-1, 1)
            torch._foreach_add_(bucket_params, ratios, alpha=-hp.lr)


def by_device_and_dtype(tensor_lists: Sequence[TL]) -> list[tuple[torch.device, list[TL]]]:
    """Aligned tensor lists split by device and dtype, as torch's foreach optimizers group them (their
    kernels take tensors of one device and dtype): [(device, the lists' tensors there)]."""
    grouped = Optimizer._group_tensors_by_device_and_dtype(cast(list[list[Tensor | None]], list(tensor_lists)))
    return [(cast(torch.device, device), cast(list[TL], lists)) for (device, _), (lists, _) in grouped.items()]


def _buckets(tensor_lists: list[list[Tensor]], max_numel: int) -> list[list[tuple[Tensor, ...]]]:
    """Aligned tensor lists cut into buckets of aligned flat slices, at most max_numel elements each; a tensor not
    contiguous in every list stays whole (its bucket may then exceed max_numel)."""
    buckets: list[list[tuple[Tensor, ...]]] = []
    bucket: list[tuple[Tensor, ...]] = []
    numel = 0
    for tensors in zip(*tensor_lists):
        if all(t.is_contiguous() for t in tensors):
            flat = [t.view(-1) for t in tensors]
            slices = [tuple(f[i : i + max_numel] for f in flat) for i in range(0, flat[0].numel(), max_numel)]
        else:
            slices = [tensors]
        for piece in slices:
            if bucket and numel + piece[0].numel() > max_numel:
                buckets.append(bucket)
                bucket, numel = [], 0
            bucket.append(piece)
            numel += piece[0].numel()
    if bucket:
        buckets.append(bucket)
    return buckets


def _fused_update(
    p: Tensor, g: Tensor, m: Tensor, h: Tensor, beta1: float, lr: float, rho: float, wd: float, eps: float
) -> None:
    # Purely elementwise (no reduction), so the compiled kernel spreads over the whole tensor. lerp
    # written out: as a plain float, beta1 stays an input of the compiled graph (lerp_'s weight would
    # be baked in as a constant and recompile when beta1 changes).
    m.copy_(m + (g - m) * (1 - beta1))
    p.copy_(p * (1 - lr * wd) - lr * (m / (h * rho + eps)).clamp(-1, 1))


@functools.cache
def _fused_kernel(device: torch.device, dtype: torch.dtype) -> Callable[..., None]:
    # Not fullgraph: should a model's mix of dtypes and sizes ever exhaust dynamo's recompile limit,
    # the kernel falls back to running eagerly (same math) instead of failing.
    kernel = torch.compile(_fused_update, dynamic=True)
    # Inductor's CPU backend decides from the first call's sizes whether the compiled loop runs multi-threaded
    # (later, smaller sizes get a graph of their own): compiled on a large dummy, big parameters get threads.
    p, g, m, h = (torch.ones(1 << 20, device=device, dtype=dtype) for _ in range(4))
    kernel(p, g, m, h, 0.965, 1e-4, 0.04, 0.1, 1e-15)
    return cast(Callable[..., None], kernel)


def _fused_sophia(lists: Lists, hp: _Hyper) -> None:
    # The kernel sees every contiguous parameter viewed flat, so shapes of any rank share its graphs;
    # the rare non-contiguous ones take the per-tensor path rather than compiling a graph per layout.
    for param, grad, exp_avg, hessian, step in zip(*lists):
        if not all(t.is_contiguous() for t in (param, grad, exp_avg, hessian)):
            _single_tensor_sophia(([param], [grad], [exp_avg], [hessian], [step]), hp)
            continue
        step += 1
        views = (t.detach().view(-1) for t in (param, -grad if hp.maximize else grad, exp_avg, hessian))
        _fused_kernel(param.device, param.dtype)(*views, hp.beta1, hp.lr, hp.rho, hp.weight_decay, hp.eps)


def _single_tensor_update_hessian(hessians: TL, estimates: TL, *, beta2: float, num_tokens: float | None) -> None:
    for hessian, estimate in zip(hessians, estimates):
        hessian.mul_(beta2)
        if num_tokens is None:
            hessian.add_(estimate.clamp_min(0), alpha=1 - beta2)
        else:
            hessian.addcmul_(estimate, estimate, value=(1 - beta2) * num_tokens)


def _multi_tensor_update_hessian(hessians: TL, estimates: TL, *, beta2: float, num_tokens: float | None) -> None:
    for _, (device_hessians, device_estimates) in by_device_and_dtype([hessians, estimates]):
        torch._foreach_mul_(device_hessians, beta2)
        if num_tokens is None:
            torch._foreach_add_(device_hessians, torch._foreach_clamp_min(device_estimates, 0), alpha=1 - beta2)
        else:
            torch._foreach_addcmul_(device_hessians, device_estimates, device_estimates, value=(1 - beta2) * num_tokens)
