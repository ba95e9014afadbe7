"""Pretrain GPT-2 with Sophia (or AdamW / Lion / Muon baselines), on one CPU, one GPU or many:
`python train.py CONFIG_FILE [--key=value ...]`; train_config.py (or --help) lists every key.
Every random draw is a function of (seed, stream, iteration, global micro-batch index): docs/reliability.md."""

import json
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import Tensor

import hellaswag
from atomic import atomic_write
from checkpoint import Checkpointer
from data.common import read_meta, split_problem
from errors import UserError, run_cli, say_stderr
from hf import is_pretrained, load_gpt2
from memory import GB, estimate
from metrics import MetricsLog, start_wandb
from model import GPT, config_from_dict
from optimizers import make_optimizer, set_lr, use_fused
from parallel import Dist, all_reduce_mean, global_norm, grad_sync, parallelize, setup_distributed
from provenance import REPO, provenance
from sophia import by_device_and_dtype, gnb_loss, hutchinson
from spikes import SpikeGuard
from telemetry import Telemetry
from timing import StepTimer, mfu, peak_flops
from train_config import TrainConfig, parse_args
from vocab import GPT2, Vocab, describe, from_meta, model_vocab_size

# Streams of randomness, so that e.g. the Hessian pass never reuses the training windows.
TRAIN, HESSIAN, VAL, EVAL_TRAIN = range(4)
Log = Callable[..., None]


# ----------------------------------------------------------------------------- data


def open_split(data_dir: Path, split: str, block_size: int, meta: dict | None) -> int:
    """Check data_dir/<split>.bin (uint16 tokens, against meta.json's count); returns its token count."""
    path, prepare = data_dir / f"{split}.bin", data_dir / "prepare.py"
    fix = "point data_dir at a folder with train.bin/val.bin (see data/)"
    if prepare.exists():
        fix = f"run `python {prepare.relative_to(REPO) if prepare.is_relative_to(REPO) else prepare}`"
    why = split_problem(data_dir, split, meta)
    if why is not None:
        raise UserError(f"{path} {why}: {fix}" + ("" if why == "not found" else " again"))
    tokens = path.stat().st_size // 2
    if tokens <= block_size:
        raise UserError(
            f"{path} has {tokens} tokens, not more than block_size={block_size}: lower block_size or use more data"
        )
    return tokens


def get_batch(
    path: Path, seed: int, stream: int, it: int, index: int, batch_size: int, block_size: int, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Micro-batch (x, y) `index` of iteration `it` in a stream: random windows seeded by (seed, stream, it, index)."""
    data = np.memmap(path, dtype=np.uint16, mode="r")  # re-opened per batch: a long-lived memmap leaks memory
    ix = np.random.default_rng([seed, stream, it, index]).integers(0, len(data) - block_size, size=batch_size)
    x = torch.from_numpy(np.stack([data[i : i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1 : i + 1 + block_size] for i in ix]).astype(np.int64))
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def reseed(seed: int, stream: int, it: int, index: int) -> None:
    """Seed torch's RNG (dropout masks, Sophia's sampled labels) for one micro-step."""
    torch.manual_seed(int(np.random.SeedSequence([seed, stream, it, index, 1]).generate_state(1)[0]))


def lr_at(it: int, cfg: TrainConfig) -> float:
    """Linear warmup for warmup_iters, then cosine decay to min_lr at lr_decay_iters."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.final_lr_decay_iters:
        return cfg.final_min_lr
    ratio = (it - cfg.warmup_iters) / max(1, cfg.final_lr_decay_iters - cfg.warmup_iters)
    return cfg.final_min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.final_min_lr)


# ----------------------------------------------------------------------------- setup


@dataclass
class Plan:
    """Every value a run derives from its config, the number of ranks and the device (resolve)."""

    grad_accum: int  # micro-steps per rank in an optimizer step
    hess_micro: int  # micro-steps per rank in a Hessian refresh
    hess_batch_size: int  # sequences per micro-step in a Hessian refresh
    hess_tokens: int  # predictions in one Hessian estimate, all ranks together
    tokens_per_iter: int  # training tokens in one optimizer step, all ranks together
    dtype: str  # 'float32' | 'bfloat16' | 'float16'
    compile: bool
    fused: bool  # the fused optimizer step (optimizers.use_fused)
    tf32: bool  # float32 matmuls on TensorFloat-32 tensor cores (CUDA), as nanoGPT and llm.c run them
    data_dir: Path


def indivisible(key: str, total: int, batch_size: int, world_size: int, fix: str) -> UserError:
    """The error of a batch that batch_size * world_size does not split, with the micro-batch sizes that would."""
    fits = [str(b) for b in range(1, total // world_size + 1) if total % (b * world_size) == 0]
    hint = f"batch_size values that fit world_size={world_size}: {', '.join(fits)}"
    if not fits:
        hint = f"{total} sequences cannot be split evenly over world_size={world_size}: use a multiple of it"
    return UserError(
        f"{key}={total} is not divisible by batch_size * world_size = {batch_size} * {world_size}: {fix} ({hint})"
    )


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """The compute dtype 'auto' stands for: bfloat16 on a CUDA device that has it, else float32."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def resolve(cfg: TrainConfig, world_size: int, device: torch.device) -> Plan:
    """The Plan of a run; a UserError when the batch does not split."""
    per_step = cfg.batch_size * world_size
    if cfg.total_batch_size % per_step:
        fix = "change batch_size or total_batch_size"
        raise indivisible("total_batch_size", cfg.total_batch_size, cfg.batch_size, world_size, fix)
    hess_total = cfg.hess_total_batch_size or cfg.total_batch_size
    hess_batch = min(cfg.batch_size, hess_total // world_size)
    if cfg.is_sophia and (hess_batch == 0 or hess_total % (hess_batch * world_size)):
        fix = "use a multiple of it, or a multiple of world_size below it"
        raise indivisible("hess_total_batch_size", hess_total, cfg.batch_size, world_size, fix)
    return Plan(
        grad_accum=cfg.total_batch_size // per_step,
        hess_micro=hess_total // (hess_batch * world_size),
        hess_batch_size=hess_batch,
        hess_tokens=hess_total * cfg.block_size,
        tokens_per_iter=cfg.total_batch_size * cfg.block_size,
        dtype=resolve_dtype(cfg.dtype, device),
        compile=device.type == "cuda" if cfg.compile is None else cfg.compile,
        fused=use_fused(cfg.fused_optimizer, device),
        tf32=device.type == "cuda",
        data_dir=Path(cfg.data_dir) if cfg.data_dir else REPO / "data" / cfg.dataset,
    )


@dataclass
class TrainState:
    """The loop's state: what a checkpoint carries besides weights, optimizer and loss scale (torchtitan's)."""

    iter: int = 0
    tokens_seen: int = 0
    time_s: float = 0.0  # training time: evals and checkpoints excluded
    best_val_loss: float = math.inf
    last_eval_iter: int = -1
    skipped_steps: int = 0  # non-finite steps
    clipped_steps: int = 0
    skipped_hessian: int = 0  # non-finite Hessian estimates
    wandb_run_id: str | None = None
    spike_skipped_steps: int = 0  # outlier steps (spikes.py)
    spike_skipped_hessian: int = 0
    rollbacks: int = 0
    rollback_batches: int = 0  # batches the rollbacks moved the data on by
    spike_guard: dict | None = None  # SpikeGuard.state_dict(), None when the guard is off

    def state_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            setattr(self, key, value)


@dataclass
class Run:
    """What the step functions share."""

    cfg: TrainConfig
    plan: Plan
    dist: Dist
    train_path: Path
    val_path: Path
    raw_model: GPT
    model: torch.nn.Module  # compiled and/or DDP-wrapped: what the training step calls
    eval_model: torch.nn.Module  # compiled but not DDP-wrapped
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: AbstractContextManager
    checkpointer: Checkpointer
    timer: StepTimer  # where a step's time goes; off unless scripts/bench/bench_train.py switches it on
    telemetry: Telemetry  # per-group update sizes (and Sophia's clipping), measured on logged steps
    spikes: SpikeGuard  # the outlier windows and recent skips (spikes.py)
    hellaswag: list | None = None  # HellaSwag examples when hellaswag_interval > 0
    data_offset: int = 0  # iteration it trains on the data of it + data_offset (skip_batches + the rollbacks')
    sigterm: bool = False  # this rank has received SIGTERM (preemptible)


def check_writable(out_dir: Path, rank: int) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test_{rank}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"out_dir {out_dir} is not writable ({e.strerror}): choose another --out_dir") from None


def build_model(cfg: TrainConfig, vocab: Vocab = GPT2, log: Log = print) -> GPT:
    """A new run's GPT: OpenAI's or a Hugging Face GPT-2 (init_from), else fresh weights."""
    if not is_pretrained(cfg.init_from):
        return GPT(config_from_dict({**asdict(cfg), "vocab_size": model_vocab_size(vocab)}))
    if vocab != GPT2:
        raise UserError(
            f"init_from={cfg.init_from!r} has GPT-2's vocabulary but dataset {cfg.dataset!r} is written in "
            f"{describe(vocab)}: train it from scratch, or use a GPT-2 dataset"
        )
    log(f"initialising from the GPT-2 weights of {cfg.init_from}")
    model = load_gpt2(cfg.init_from, dropout=cfg.dropout)
    context = model.config.block_size
    if cfg.block_size > context:
        raise UserError(
            f"block_size={cfg.block_size} is longer than the context of {cfg.init_from} ({context} tokens): "
            f"set block_size <= {context}"
        )
    if cfg.block_size < context:
        model.crop_block_size(cfg.block_size)
    return model


def setup(cfg: TrainConfig, dist: Dist, log: Log) -> tuple[Run, TrainState, MetricsLog | None]:
    """Everything before the first step; returns the Run, the loop's state and rank 0's metrics log (else None)."""
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        log(
            "warning: torchrun shares its TCP store with the workers, so restarted workers can read the last "
            "attempt's addresses and fail to connect (pytorch/pytorch#135712): "
            "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun --max-restarts"
        )
    plan, device, out_dir = resolve(cfg, dist.world_size, dist.device), dist.device, Path(cfg.out_dir)
    if plan.tf32:
        torch.set_float32_matmul_precision("high")
    check_writable(out_dir, dist.rank)
    meta = read_meta(plan.data_dir)
    for split in ("train", "val"):
        open_split(plan.data_dir, split, cfg.block_size, meta)
    vocab = from_meta(meta or {}, plan.data_dir / "meta.json")
    checkpointer = Checkpointer(cfg, vocab, plan.data_dir, dist, log)

    torch.manual_seed(cfg.seed)  # the initial weights; every later draw is reseeded by reseed()
    raw_model = checkpointer.model() if checkpointer.resuming else build_model(cfg, vocab, log)
    examples = None
    if cfg.hellaswag_interval:
        hellaswag.check_vocab(vocab, f"dataset {cfg.dataset!r}", "set hellaswag_interval=0 for it")
        examples = hellaswag.load(cfg.hellaswag_data or hellaswag.DEFAULT_DATA)
    model, eval_model = parallelize(raw_model, cfg, dist, plan.dtype, plan.compile)
    optimizer = make_optimizer(cfg, raw_model, device)
    scaler = torch.amp.GradScaler(device.type, enabled=(plan.dtype == "float16"))
    state = TrainState()
    if checkpointer.resuming:
        loaded = state.state_dict()  # the checkpoint fills it by key
        checkpointer.load(raw_model, optimizer, scaler, loaded)
        state.load_state_dict(loaded)
    autocast = nullcontext() if plan.dtype == "float32" else torch.autocast(device.type, getattr(torch, plan.dtype))
    run = Run(
        cfg=cfg,
        plan=plan,
        dist=dist,
        train_path=plan.data_dir / "train.bin",
        val_path=plan.data_dir / "val.bin",
        raw_model=raw_model,
        model=model,
        eval_model=eval_model,
        optimizer=optimizer,
        scaler=scaler,
        autocast=autocast,
        checkpointer=checkpointer,
        timer=StepTimer(device),
        telemetry=Telemetry(raw_model, optimizer, cfg.is_sophia),
        spikes=SpikeGuard(cfg, device),
        hellaswag=examples,
        data_offset=cfg.skip_batches + state.rollback_batches,
    )
    run.spikes.load_state_dict(state.spike_guard)

    metrics = None
    n_params, n_body = raw_model.num_params(), raw_model.num_params(non_embedding=True)
    if dist.master:
        config = {
            **asdict(cfg),
            "world_size": dist.world_size,
            "grad_accum": plan.grad_accum,
            "hess_micro": plan.hess_micro,
            "tokens_per_iter": plan.tokens_per_iter,
            "dtype_resolved": plan.dtype,
            "device_resolved": str(device),
            "compile_resolved": plan.compile,
            "fused_optimizer_resolved": plan.fused,
            "tf32": plan.tf32,
            "min_lr_resolved": cfg.final_min_lr,
            "lr_decay_iters_resolved": cfg.final_lr_decay_iters,
            "n_params": n_params,
            "n_params_non_embedding": n_body,
            "provenance": provenance(device),
        }
        with atomic_write(out_dir / "config.json") as f:
            f.write(json.dumps(config, indent=2) + "\n")
        wandb_run = None
        if cfg.wandb_log:
            wandb_run = start_wandb(cfg, out_dir, state.wandb_run_id, config)
            state.wandb_run_id = wandb_run.id
        metrics = MetricsLog(out_dir, state.iter if checkpointer.resuming else None, wandb_run)
    log(
        f"{n_params / 1e6:.2f}M parameters ({n_body / 1e6:.2f}M non-embedding) | {describe(vocab)} | "
        f"{cfg.optimizer_name} | {dist.world_size} x {device} {plan.dtype}{' compiled' if plan.compile else ''} | "
        f"{plan.tokens_per_iter:,} tokens/iter = {dist.world_size} ranks x {plan.grad_accum} micro-steps x "
        f"{cfg.batch_size} x {cfg.block_size}"
        + (f" | Hessian every {cfg.hess_interval} iters on {plan.hess_tokens:,} tokens" if cfg.is_sophia else "")
    )
    shape = {k: getattr(raw_model.config, k) for k in ("n_layer", "n_embd", "block_size", "bias")}
    memory = estimate(replace(cfg, **shape), dist.world_size, plan.dtype, raw_model.config.vocab_size)
    gpu = torch.cuda.get_device_properties(device).total_memory / GB if device.type == "cuda" else None
    log(f"{cfg.parallelism} memory estimate: {memory.line()}" + (f"; this GPU has {gpu:.1f} GB" if gpu else ""))
    return run, state, metrics


# ----------------------------------------------------------------------------- the step


def train_loss(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return model(x, y)[1]


def gnb_estimator_loss(model: torch.nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """Sophia-G's Gauss-Newton-Bartlett estimator: cross-entropy against labels sampled from the model (y unused)."""
    return gnb_loss(model(x)[0])


def load_batch(run: Run, stream: int, it: int, index: int) -> tuple[Tensor, Tensor]:
    """Micro-batch `index` (global: independent of world size) of a stream at iteration it + run.data_offset."""
    cfg, batch_size = run.cfg, run.plan.hess_batch_size if stream == HESSIAN else run.cfg.batch_size
    with run.timer("data"):
        return get_batch(
            run.train_path, cfg.seed, stream, it + run.data_offset, index, batch_size, cfg.block_size, run.dist.device
        )


def forward_backward(run: Run, loss_fn: Callable[..., Tensor], stream: int, it: int, n_micro: int) -> Tensor:
    """Accumulate into .grad loss_fn's gradient averaged over n_micro micro-batches (and ranks); returns this rank's
    mean loss as a tensor (no host sync). The next micro-batch is read while the device runs the forward pass."""
    total = torch.zeros((), device=run.dist.device)
    x, y = load_batch(run, stream, it, run.dist.rank * n_micro)
    for micro in range(n_micro):
        index, last = run.dist.rank * n_micro + micro, micro == n_micro - 1
        reseed(run.cfg.seed, stream, it + run.data_offset, index)
        with grad_sync(run.model, last):
            with run.timer("forward_backward"), run.autocast:
                loss = loss_fn(run.model, x, y) / n_micro
            if not last:
                x, y = load_batch(run, stream, it, index + 1)
            with run.timer("forward_backward"):
                run.scaler.scale(loss).backward()
        total += loss.detach()
    return total


def clip_gradients(run: Run, clip: float) -> Tensor:
    """Clip the (unscaled) gradients to global norm `clip` (0: no clipping); returns the norm before, a
    float64 tensor. torch's clip_grads_with_norm_ rule with the coefficient cast to the gradients' dtype: a
    float64 one sends CUDA's _foreach_mul_ to its one-kernel-per-tensor path (the CPU casts it too)."""
    grads = [p.grad for p in run.raw_model.parameters() if p.grad is not None]
    norm = global_norm(grads)
    if clip > 0:
        coef = (clip / (norm + 1e-6)).clamp(max=1.0)
        for device, [same] in by_device_and_dtype([grads]):
            torch._foreach_mul_(same, coef.to(device, same[0].dtype))
    return norm


def hutchinson_refresh(run: Run, it: int) -> tuple[list[torch.nn.Parameter], list[Tensor]]:
    """Sophia-H: u * (H u) of the training loss, averaged over the Hessian batch and all ranks.
    Runs on the raw model under the math attention kernel: fused kernels have no double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    n_micro, params = run.plan.hess_micro, [p for p in run.raw_model.parameters() if p.requires_grad]
    total: Any = None
    for micro in range(n_micro):
        index = run.dist.rank * n_micro + micro
        x, y = load_batch(run, HESSIAN, it, index)
        reseed(run.cfg.seed, HESSIAN, it + run.data_offset, index)
        with sdpa_kernel(SDPBackend.MATH), run.autocast:
            loss = run.raw_model(x, y)[1] / n_micro
        estimates = hutchinson(loss, params)
        total = estimates if total is None else torch._foreach_add(total, estimates)
    for t in total:
        all_reduce_mean(t, run.dist)
    return params, total


def hessian_due(run: Run, it: int) -> bool:
    return run.cfg.is_sophia and (it + 1) % run.cfg.hess_interval == 0


def usable_estimate(run: Run, norm: Tensor) -> bool:
    """Whether an estimate of norm `norm` may enter the EMA: finite and not an outlier; one host sync for both."""
    if not run.spikes.on:
        return bool(torch.isfinite(norm).item())
    finite, *judged = torch.cat([torch.isfinite(norm).view(1).double(), run.spikes.judge("hessian", [norm])]).tolist()
    return finite > 0 and not run.spikes.read("hessian", judged).outlier


def refresh_hessian(run: Run, it: int) -> bool:
    """Update Sophia's Hessian EMA from a fresh batch; False if the estimate was not finite or an outlier."""
    optimizer: Any = run.optimizer  # SophiaG or SophiaH
    with run.timer("hessian"):
        optimizer.zero_grad(set_to_none=True)
        if run.cfg.optimizer_name == "sophiah":
            params, estimates = hutchinson_refresh(run, it)
            if not usable_estimate(run, global_norm(estimates)):
                return False
            optimizer.update_hessian(params, estimates)
            return True
        forward_backward(run, gnb_estimator_loss, HESSIAN, it, run.plan.hess_micro)
        if run.scaler.is_enabled():
            # fp16: undo the loss scale by hand. The refresh is not an optimizer step, so the GradScaler's
            # unscale_/update, which would count it as one towards growing the scale, are left alone
            grads = [p.grad for p in run.raw_model.parameters() if p.grad is not None]
            torch._foreach_mul_(grads, 1.0 / run.scaler.get_scale())
        usable = usable_estimate(run, clip_gradients(run, run.cfg.grad_clip if run.cfg.hess_grad_clip else 0.0))
        if usable:
            optimizer.update_hessian(num_tokens=run.plan.hess_tokens)
        optimizer.zero_grad(set_to_none=True)
        return usable


class StepResult(NamedTuple):
    ok: bool  # False: the update was skipped (state untouched): the loss or the gradient was not finite, or an outlier
    loss: float  # mean training loss over the step's batch
    norm: float  # gradient norm before clipping
    lr: float  # the step's learning rate
    stop: bool  # True on every rank when any rank has received SIGTERM
    groups: dict  # on a logged step that updated: its telemetry (telemetry.py, Sophia's win_rate too), else {}
    outlier: bool = False  # True: skipped as an outlier against the spike guard's window (spikes.py)


def train_step(run: Run, it: int) -> StepResult:
    """One optimizer step; on a logged step, the telemetry is measured before a Hessian refresh changes the state."""
    lr = lr_at(it, run.cfg)
    set_lr(run.optimizer, lr)
    loss = forward_backward(run, train_loss, TRAIN, it, run.plan.grad_accum)
    with run.timer("optimizer"):
        # the SIGTERM flag rides on the loss all-reduce, so all ranks stop at the same step at no extra cost
        # (a fill on the device: torch.tensor(value, device=cuda) would be a blocking host-to-device copy)
        loss, stop = all_reduce_mean(torch.stack([loss, torch.full_like(loss, float(run.sigterm))]), run.dist)
        run.scaler.unscale_(run.optimizer)  # fp16: the GradScaler's inf check, then its step and update
        norm = clip_gradients(run, run.cfg.grad_clip)
        read = torch.stack([loss, norm.to(loss.device, loss.dtype), stop])
        if run.spikes.on:  # the spike guard's verdict, computed on the device, comes back with them
            read = torch.cat([read, run.spikes.judge("step", [loss, norm]).to(loss.dtype)])
        loss_f, norm_f, stop_f, *judged = read.tolist()  # one host sync
        outlier = run.spikes.on and run.spikes.read("step", judged).outlier
        ok = math.isfinite(loss_f) and math.isfinite(norm_f) and not outlier
        logged = (it + 1) % run.cfg.log_interval == 0 and (run.dist.master or run.telemetry.sharded)
        before = run.telemetry.snapshot() if ok and logged else None
        if ok:
            run.scaler.step(run.optimizer)
        run.scaler.update()
        run.optimizer.zero_grad(set_to_none=True)
    groups = run.telemetry.measure(before) if before is not None else {}
    return StepResult(ok, loss_f, norm_f, lr, stop_f > 0, groups, outlier)


def iteration(run: Run, it: int) -> tuple[StepResult, bool | None]:
    """The optimizer step, then Sophia's refresh if due and the step updated (None: no refresh; False: skipped)."""
    step = train_step(run, it)
    return step, refresh_hessian(run, it) if step.ok and hessian_due(run, it) else None


@torch.no_grad()
def evaluate(run: Run, it: int, log: Log) -> dict[str, float]:
    """Mean loss over eval_iters fixed batches of each split, then HellaSwag's accuracy when due. Every rank runs as
    many forward passes (FSDP's all-gathers need them all): where eval_iters does not divide, extra ones are unused."""
    cfg, dist, model = run.cfg, run.dist, run.eval_model
    model.eval()
    out = {}
    for key, path, stream in (("val/loss", run.val_path, VAL), ("eval/train_loss", run.train_path, EVAL_TRAIN)):
        total = torch.zeros((), device=dist.device)
        for k in range(dist.rank, math.ceil(cfg.eval_iters / dist.world_size) * dist.world_size, dist.world_size):
            x, y = get_batch(path, cfg.seed, stream, 0, k % cfg.eval_iters, cfg.batch_size, cfg.block_size, dist.device)
            with run.autocast:
                loss = model(x, y)[1].float()
            if k < cfg.eval_iters:
                total += loss
        if dist.distributed:
            torch_dist.all_reduce(total)
        out[key] = total.item() / cfg.eval_iters
    model.train()
    line = f"eval iter {it}: val loss {out['val/loss']:.4f}, train loss {out['eval/train_loss']:.4f}"
    if run.hellaswag is not None and (it % cfg.hellaswag_interval == 0 or it >= cfg.max_iters):
        t0, tokens = time.perf_counter(), cfg.batch_size * cfg.block_size
        out |= hellaswag.evaluate(
            model, run.hellaswag, cfg.block_size, tokens, run.autocast, dist.device, dist.rank, dist.world_size
        )
        line += (
            f", hellaswag acc_norm {out['eval/hellaswag_acc_norm']:.4f} acc {out['eval/hellaswag_acc']:.4f} "
            f"({time.perf_counter() - t0:.1f} s)"
        )
    log(line)
    return out


# ----------------------------------------------------------------------------- the loop


class Preempted(Exception):
    """SIGTERM (a scheduler's pre-emption): a checkpoint was written and the run stopped."""


@contextmanager
def preemptible(run: Run) -> Iterator[None]:
    """SIGTERM sets run.sigterm, which the next step shares with all ranks. Off the main thread there is no handler."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, lambda *_: setattr(run, "sigterm", True))
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def save(run: Run, state: TrainState) -> None:
    state.spike_guard = run.spikes.state_dict() if run.spikes.on else None  # off: a later resume starts afresh
    run.checkpointer.save(run.raw_model, run.optimizer, run.scaler, state.state_dict())


def log_step(
    run: Run, state: TrainState, since: TrainState, step: StepResult, metrics: MetricsLog | None, log: Log
) -> None:
    """The metrics row and console line of the steps since state `since`; on every rank (FSDP's norms need them)."""
    cfg = run.cfg
    param_norm = global_norm(list(run.raw_model.parameters())).item()
    if metrics is None:
        return
    steps, tokens, seconds = state.iter - since.iter, state.tokens_seen - since.tokens_seen, state.time_s - since.time_s
    peak = peak_flops(run.dist.device, cfg.peak_flops)
    utilisation = mfu(run.raw_model.flops_per_token(), tokens, seconds, run.dist.world_size, peak)
    row = {
        "iter": state.iter,
        "tokens_seen": state.tokens_seen,
        "time_s": state.time_s,
        "train/loss": step.loss,
        "lr": step.lr,
        "grad_norm": step.norm,
        "param_norm": param_norm,
        "mfu": utilisation,
        "ms_per_iter": 1000 * seconds / steps,
        "tokens_per_s": tokens / seconds,
        "train/clip_rate": state.clipped_steps / state.iter,
        "skipped_steps": state.skipped_steps,
    }
    if cfg.is_sophia:  # a skipped step has no clipping to report
        row |= {"train/win_rate": math.nan, "optim/hessian_norm": math.nan, "skipped_hessian": state.skipped_hessian}
    if run.spikes.on:
        row |= {
            "spike/skipped_steps": state.spike_skipped_steps,
            "spike/rollbacks": state.rollbacks,
            "spike/data_offset": run.data_offset,
            **run.spikes.row(),
        }
        if cfg.is_sophia:
            row["spike/skipped_hessian"] = state.spike_skipped_hessian
    row |= step.groups
    metrics.log(row)
    eta = (cfg.max_iters - state.iter) * seconds / steps
    log(
        f"iter {state.iter}/{cfg.max_iters} | loss {step.loss:.4f} | lr {step.lr:.2e} | "
        f"{row['ms_per_iter']:.0f} ms/iter | {row['tokens_per_s']:,.0f} tok/s"
        + (f" | mfu {100 * utilisation:.1f}%" if utilisation is not None else "")
        + (f" | win {row['train/win_rate']:.3f}" if cfg.is_sophia else "")
        + f" | eta {eta / 60:.1f} min"
    )


# the loop state a rollback keeps: what happened (the clock, the counts of skips and rollbacks), not where the run is
KEPT = ("time_s", "rollbacks", "skipped_steps", "skipped_hessian", "spike_skipped_steps", "spike_skipped_hessian")


def roll_back(run: Run, state: TrainState, metrics: MetricsLog | None, it: int, log: Callable[[str], None]) -> bool:
    """On every rank: reload the newest checkpoint (all but KEPT) and move the data on; False when there is none yet."""
    cfg = run.cfg
    kept, rollbacks, offset = {k: getattr(state, k) for k in KEPT}, state.rollbacks, state.rollback_batches
    skips = len(run.spikes.skips)
    if rollbacks >= cfg.spike_max_rollbacks:
        raise UserError(
            f"{skips} outlier steps within {cfg.spike_rollback_window} steps at iter {it + 1} after {rollbacks} "
            f"rollbacks: stopping. Lower learning_rate or raise rho (Sophia) / weight_decay (or spike_max_rollbacks), "
            f"then continue from the last good checkpoint in {cfg.out_dir} with --init_from=auto"
        )
    loaded = state.state_dict()  # the checkpoint fills it by key
    path = run.checkpointer.reload(run.raw_model, run.optimizer, run.scaler, loaded)
    if path is None:
        run.spikes.skips = []
        log(
            f"iter {it + 1}: {skips} outlier steps within {cfg.spike_rollback_window} steps, but no checkpoint to roll "
            f"back to yet: carrying on"
        )
        return False
    # the next step, at state.iter, reads the data of the iteration after `it`'s, plus spike_rollback_batches
    state.load_state_dict(loaded)
    moved = it + 1 - state.iter + cfg.spike_rollback_batches
    state.load_state_dict({**kept, "rollbacks": rollbacks + 1, "rollback_batches": offset + moved})
    run.spikes.load_state_dict(state.spike_guard)
    run.data_offset = cfg.skip_batches + state.rollback_batches
    if metrics is not None:
        metrics.truncate(state.iter)
    log(
        f"iter {it + 1}: {skips} outlier steps within {cfg.spike_rollback_window} steps: rolled back to iter "
        f"{state.iter} ({path}), the data moved on by {moved} batches (rollback {rollbacks + 1} of at most "
        f"{cfg.spike_max_rollbacks})"
    )
    return True


def train(cfg: TrainConfig, dist: Dist) -> None:
    log: Log = (lambda *a: print(*a, flush=True)) if dist.master else (lambda *a: None)
    run, state, metrics = setup(cfg, dist, log)
    try:
        with preemptible(run):
            loop(run, state, metrics, log)
    finally:
        if metrics is not None:
            metrics.close()
    log(
        f"done: {state.iter} iters, {state.tokens_seen:,} tokens, best val loss {state.best_val_loss:.4f}, "
        f"{state.time_s:.0f} s of training; outputs in {cfg.out_dir}"
    )


def loop(run: Run, state: TrainState, metrics: MetricsLog | None, log: Log) -> None:
    """Evaluate and checkpoint every eval_interval and at the end; in between, steps, log lines and rollbacks."""
    cfg = run.cfg
    since = replace(state)  # at the last log line
    consecutive_skips, stop = 0, False  # stop: SIGTERM on some rank, learnt in the last step
    while True:
        it = state.iter

        # evaluate and checkpoint, every eval_interval and at the end
        if (it % cfg.eval_interval == 0 or it >= cfg.max_iters) and state.last_eval_iter != it:
            losses = evaluate(run, it, log)
            state.last_eval_iter, state.best_val_loss = it, min(state.best_val_loss, losses["val/loss"])
            if metrics is not None:
                metrics.log({"iter": it, "tokens_seen": state.tokens_seen, "time_s": state.time_s, **losses})
            if it > 0:
                save(run, state)
            if cfg.eval_only:
                break
        if it >= cfg.max_iters:
            break
        if stop:  # pre-empted (SIGTERM on any rank during the last step): checkpoint and stop
            save(run, state)
            raise Preempted(
                f"SIGTERM at iter {it}: checkpoint written to {cfg.out_dir}; continue with --init_from=auto"
            )

        # one optimizer step (skipped when the loss or the gradient is not finite, or an outlier)
        t0 = time.perf_counter()
        step, refreshed = iteration(run, it)
        stop, tokens, rollback_due = step.stop, run.plan.tokens_per_iter, False
        if step.ok:
            consecutive_skips = 0
            state.clipped_steps += int(cfg.grad_clip > 0 and step.norm > cfg.grad_clip)
        elif step.outlier:
            state.spike_skipped_steps += 1
            log(f"iter {it + 1}: outlier step, update skipped: {run.spikes.describe('step')}")
            rollback_due = run.spikes.skipped(it)
        else:
            consecutive_skips += 1
            state.skipped_steps += 1
            log(f"iter {it + 1}: non-finite loss ({step.loss}) or gradient norm ({step.norm}): update skipped")
            if consecutive_skips >= cfg.max_skipped_steps:
                raise UserError(
                    f"{consecutive_skips} consecutive non-finite steps at iter {it + 1}: stopping. Lower "
                    f"learning_rate or raise rho (Sophia) / weight_decay, then continue from the last good "
                    f"checkpoint in {cfg.out_dir} (if any) with --init_from=auto"
                )

        # Sophia: the Hessian estimate refreshed every hess_interval steps
        if refreshed is not None:
            tokens += run.plan.hess_tokens
            if not refreshed and run.spikes.outlier("hessian"):
                state.spike_skipped_hessian += 1
                log(f"iter {it + 1}: outlier Hessian estimate, refresh skipped: {run.spikes.describe('hessian')}")
            elif not refreshed:
                state.skipped_hessian += 1
                log(f"iter {it + 1}: non-finite Hessian estimate: refresh skipped")

        # the one clock: training time, evals and checkpoints excluded. No device synchronize: the step's loss
        # read-back waits for the device, which meanwhile runs the optimizer step while the host reads the next batch
        state.time_s += time.perf_counter() - t0
        state.iter = it + 1
        state.tokens_seen += tokens

        if state.iter % cfg.log_interval == 0:
            log_step(run, state, since, step, metrics, log)
            since = replace(state)

        # outlier steps close together: back to the last checkpoint, the data moved on past them
        if rollback_due and roll_back(run, state, metrics, it, log):
            since, consecutive_skips = replace(state), 0


def main(argv: list[str] | None = None) -> None:
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = setup_distributed(cfg)
    try:
        train(cfg, dist)
    finally:
        if dist.distributed:
            torch_dist.destroy_process_group()


def cli() -> int:
    """Command-line entry: a user mistake is one line on stderr and exit code 2; a pre-emption exits 143."""
    try:
        return run_cli(lambda _: main())
    except Preempted as e:
        say_stderr(f"stopped: {e}")
        return 143


if __name__ == "__main__":
    sys.exit(cli())
