"""Pretrain GPT-2 with Sophia (or AdamW / Lion / Muon baselines), on one CPU, one GPU or many.

    python train.py config/train_tiny_sophiag.py                      # laptop CPU
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_small_sophiag.py
    python train.py config/train_tiny_adamw.py --learning_rate=1e-3 --out_dir=out/x
    python train.py --help                                            # every config key

Config files are Python files that are executed; their top-level assignments, then the
`--key=value` overrides (parsed as Python literals, never evaluated), are applied to TrainConfig.
Every random draw of a training step (data windows, dropout, Sophia's sampled labels) is a pure
function of (seed, iteration, global micro-batch index), so a resumed run, or one on a different
number of GPUs with the same total batch, sees exactly what an uninterrupted run would have (but
a Hessian batch smaller than one micro-batch per rank is split by rank, so its windows depend on
the number of GPUs).
"""
import ast
import difflib
import inspect
import json
import math
import os
import signal
import sys
import threading
import time
import typing
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as torch_dist

from atomic import atomic_write
from checkpoint import Checkpointer
from data.common import read_meta, split_problem
from errors import UserError, run_cli, say_stderr
import hellaswag
from hf import RELEASES, is_pretrained, load_gpt2
from memory import GB, estimate
from metrics import MetricsLog, start_wandb
from model import GPT, config_from_dict
from optimizers import FUSED, OPTIMIZERS, make_optimizer, set_lr, use_fused
from parallel import PARALLELISMS, Dist, all_reduce_mean, global_norm, grad_sync, parallelize, setup_distributed
from provenance import REPO, provenance
from sophia import by_device_and_dtype, gnb_loss, hutchinson
from spikes import SpikeGuard, roll_back
from telemetry import Telemetry
from timing import StepTimer, mfu, peak_flops
from vocab import GPT2, describe, from_meta, model_vocab_size

# Streams of randomness, so that e.g. the Hessian pass never reuses the training windows.
TRAIN, HESSIAN, VAL, EVAL_TRAIN = range(4)


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = "out"
    eval_interval: int = 2000
    eval_iters: int = 200  # batches per split in each evaluation
    log_interval: int = 10
    eval_only: bool = False  # evaluate once and exit
    init_from: str = "scratch"  # 'scratch' | 'resume' | 'auto' (resume if a checkpoint exists) | 'gpt2*' | a Hugging Face GPT-2 dir
    keep_last: int = 2  # checkpoints kept in out_dir
    max_skipped_steps: int = 20  # consecutive non-finite steps that stop the run
    # loss spikes (spikes.py, docs/reliability.md): a step whose loss or gradient norm lies more than spike_z
    # standard deviations above those of the last spike_window steps (on a log scale) is skipped, once
    # spike_warmup steps are in (Sophia: a Hessian estimate too, against the last refreshes). spike_rollback_skips
    # skips within spike_rollback_window steps reload the newest checkpoint and move the data past the last of
    # them plus spike_rollback_batches batches; the run stops after spike_max_rollbacks rollbacks
    spike_z: float = 6.0  # 0: off
    spike_window: int = 128
    spike_warmup: int = 128
    spike_rollback_skips: int = 5  # 0: never roll back
    spike_rollback_window: int = 100
    spike_rollback_batches: int = 200
    spike_max_rollbacks: int = 5
    # HellaSwag accuracy (hellaswag.py) at the evals of every hellaswag_interval-th iteration and at the
    # end (0: off); hellaswag_data is the file data/hellaswag/prepare.py wrote ('': data/hellaswag/val.npz)
    hellaswag_interval: int = 0
    hellaswag_data: str = ""
    # wandb
    wandb_log: bool = False
    wandb_project: str = "sophia-gpt2"
    wandb_run_name: str = ""  # default: the out_dir's name
    # data
    dataset: str = "openwebtext"
    data_dir: str = ""  # default: data/<dataset> in this repository
    seed: int = 1337
    skip_batches: int = 0  # step t trains on the batches of iteration t + skip_batches (+ what rollbacks skipped)
    batch_size: int = 12  # micro-batch, sequences per forward pass on one device
    total_batch_size: int = 480  # sequences per optimizer step, all devices and micro-steps together
    block_size: int = 1024
    # model
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = False
    scale_attn_by_inverse_layer_idx: bool = False
    # optimizer
    optimizer_name: str = "sophiag"  # 'sophiag' | 'sophiah' | 'adamw' | 'lion' | 'muon'
    learning_rate: float = 6e-4  # peak; for Sophia this is the official code's lr (= rho * eta of the paper)
    max_iters: int = 100000
    weight_decay: float = 0.2
    beta1: float = 0.965
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    # True: a fused step (AdamW: torch's kernel; Sophia: one torch.compile'd kernel per parameter);
    # None: fused on CUDA, the foreach step elsewhere (Lion and Muon's matrices have only that one)
    fused_optimizer: typing.Optional[bool] = None
    rho: float = 0.05  # Sophia's clipping threshold
    hess_interval: int = 10  # Sophia: refresh the Hessian estimate every k steps
    # sequences in each Hessian estimate (None: total_batch_size); below batch_size * world_size, each
    # rank draws one micro-batch of hess_total_batch_size / world_size sequences
    hess_total_batch_size: typing.Optional[int] = None
    hess_grad_clip: bool = True  # clip the estimator's gradient at grad_clip, as the official code does
    # Muon (optimizer_name='muon'; defaults: KellerJordan/Muon's recipe): learning_rate and weight_decay
    # are Muon's, which trains the 2-D weight matrices inside the transformer blocks; AdamW trains the
    # rest (token and position embeddings = the tied LM head, norm gains, biases) with beta1, beta2 and
    # the muon_adamw_* keys. Both follow the lr schedule, the AdamW part scaled to peak at muon_adamw_lr.
    # muon_adjust_lr_fn is torch.optim.Muon's per-matrix lr: 'original' (Keller Jordan's, lr * sqrt(max(1,
    # rows / cols))) or 'match_rms_adamw' (Moonshot's, lr * 0.2 * sqrt(max(rows, cols)): updates as large
    # as AdamW's, so that AdamW's learning_rate and weight_decay carry over).
    muon_momentum: float = 0.95  # Nesterov momentum
    muon_adjust_lr_fn: str = "original"  # 'original' | 'match_rms_adamw'
    muon_adamw_lr: float = 3e-4
    muon_adamw_weight_decay: float = 0.01  # on the embeddings; none on gains and biases
    # learning-rate schedule: linear warmup, then cosine decay to min_lr
    decay_lr: bool = True
    warmup_iters: int = 2000
    lr_decay_iters: typing.Optional[int] = None  # None: max_iters
    min_lr: typing.Optional[float] = None  # None: learning_rate / 20 (the paper decays to ~0.05x)
    # system
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps'
    dtype: str = "auto"  # 'auto' (bfloat16 on CUDA, else float32) | 'float32' | 'bfloat16' | 'float16'
    compile: typing.Optional[bool] = None  # None: on for CUDA, off elsewhere
    backend: str = "auto"  # process-group backend: 'auto' (nccl on CUDA, gloo on CPU) | 'nccl' | 'gloo'
    parallelism: str = "ddp"  # 'ddp': every rank holds the model | 'fsdp': weights, grads, optimizer state sharded
    activation_checkpointing: bool = False  # recompute each block in the backward pass: less memory, ~1/3 more compute
    peak_flops: float = 0.0  # one device's peak FLOP/s for MFU (0: A100/H100/H200 known, else MFU is not logged)

    def validate(self):
        def need(ok, msg):
            if not ok:
                raise UserError(msg)
        for name in ("eval_interval", "eval_iters", "log_interval", "keep_last", "max_skipped_steps",
                     "batch_size", "total_batch_size", "block_size", "hess_interval", "spike_rollback_window"):
            need(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("spike_rollback_skips", "spike_rollback_batches", "spike_max_rollbacks", "skip_batches"):
            need(getattr(self, name) >= 0, f"{name} must be >= 0, got {getattr(self, name)}")
        need(self.spike_z >= 0, f"spike_z must be >= 0 (0 turns the spike guard off), got {self.spike_z}")
        need(2 <= self.spike_warmup <= self.spike_window,
             f"spike_warmup={self.spike_warmup} must be between 2 and spike_window={self.spike_window}: a standard "
             f"deviation needs 2 values, and the window holds no more than spike_window")
        need(self.spike_rollback_skips <= self.spike_rollback_window,
             f"spike_rollback_skips={self.spike_rollback_skips} skips never fit in spike_rollback_window="
             f"{self.spike_rollback_window} steps: lower it, or 0 to never roll back")
        need(self.hellaswag_interval >= 0 and self.hellaswag_interval % self.eval_interval == 0,
             f"hellaswag_interval={self.hellaswag_interval} must be 0 (off) or a multiple of "
             f"eval_interval={self.eval_interval}: HellaSwag runs with the evals")
        need(self.max_iters >= 0, f"max_iters must be >= 0, got {self.max_iters}")
        need(self.warmup_iters >= 0, f"warmup_iters must be >= 0, got {self.warmup_iters}")
        need(self.optimizer_name in OPTIMIZERS,
             f"optimizer_name={self.optimizer_name!r} is not one of {', '.join(OPTIMIZERS)}")
        need(not self.fused_optimizer or self.optimizer_name in FUSED,
             f"fused_optimizer=True but {self.optimizer_name} has no fused step (only {', '.join(FUSED)}): "
             f"leave fused_optimizer unset")
        need(self.init_from in ("scratch", "resume", "auto") or is_pretrained(self.init_from),
             f"init_from={self.init_from!r}: use 'scratch', 'resume', 'auto', one of {', '.join(RELEASES)} "
             f"or the path of a Hugging Face GPT-2 directory")
        need(self.dtype in ("auto", "float32", "bfloat16", "float16"),
             f"dtype={self.dtype!r}: use 'auto', 'float32', 'bfloat16' or 'float16'")
        need(self.backend in ("auto", "nccl", "gloo"), f"backend={self.backend!r}: use 'auto', 'nccl' or 'gloo'")
        need(self.parallelism in PARALLELISMS, f"parallelism={self.parallelism!r}: use 'ddp' or 'fsdp'")
        need(not (self.parallelism == "fsdp" and self.optimizer_name == "sophiah"),
             "optimizer_name='sophiah' does not run under parallelism='fsdp' (its Hutchinson estimator needs "
             "double backward through the unsharded parameters): use parallelism='ddp', or sophiag")
        need(not (self.parallelism == "fsdp" and self.dtype == "float16"),
             "dtype='float16' is not supported with parallelism='fsdp': use dtype='bfloat16' (or float32)")
        need(self.learning_rate > 0, f"learning_rate must be > 0, got {self.learning_rate}")
        need(self.min_lr is None or 0 <= self.min_lr <= self.learning_rate,
             f"min_lr={self.min_lr} must be between 0 and learning_rate={self.learning_rate}")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(self.grad_clip >= 0, f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}")
        need(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, f"beta1, beta2 must be in [0, 1), got {self.beta1}, {self.beta2}")
        need(self.rho > 0, f"rho must be > 0, got {self.rho}")
        need(0 <= self.muon_momentum < 1, f"muon_momentum must be in [0, 1), got {self.muon_momentum}")
        need(self.muon_adjust_lr_fn in ("original", "match_rms_adamw"),
             f"muon_adjust_lr_fn={self.muon_adjust_lr_fn!r}: use 'original' or 'match_rms_adamw'")
        need(self.muon_adamw_lr > 0, f"muon_adamw_lr must be > 0, got {self.muon_adamw_lr}")
        need(self.muon_adamw_weight_decay >= 0, f"muon_adamw_weight_decay must be >= 0, got {self.muon_adamw_weight_decay}")
        need(0 <= self.dropout < 1, f"dropout must be in [0, 1), got {self.dropout}")
        need(self.peak_flops >= 0, f"peak_flops must be >= 0, got {self.peak_flops}")
        need(self.hess_total_batch_size is None or self.hess_total_batch_size >= 1,
             f"hess_total_batch_size must be >= 1 (or None for total_batch_size), got {self.hess_total_batch_size}")
        need(self.lr_decay_iters is None or self.lr_decay_iters >= self.warmup_iters,
             f"lr_decay_iters={self.lr_decay_iters} must be >= warmup_iters={self.warmup_iters}")
        need(self.n_embd % self.n_head == 0, f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @property
    def is_sophia(self):
        return self.optimizer_name.startswith("sophia")

    @property
    def final_min_lr(self):
        return self.learning_rate / 20 if self.min_lr is None else self.min_lr

    @property
    def final_lr_decay_iters(self):
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters


# Keys of nanoGPT and of the official Sophia repo that mean something else here.
RENAMED = {
    "gradient_accumulation_steps": "it is derived: set total_batch_size (sequences per optimizer step, "
                                   "all GPUs together) and batch_size (micro-batch per GPU)",
    "total_bs": "it is called total_batch_size here (sequences per optimizer step)",
    "interval": "it is called hess_interval here",
    "always_save_checkpoint": "a checkpoint is written at every eval; keep_last bounds how many are kept",
}


def _coerce(key, value, annotation):
    """value if it fits the field's type (ints widen to floats), else a UserError that says what fits."""
    allowed = typing.get_args(annotation) or (annotation,)
    if value is None and type(None) in allowed:
        return None
    if isinstance(value, bool):
        if bool in allowed:
            return value
    elif isinstance(value, int) and int in allowed:
        return value
    elif isinstance(value, (int, float)) and float in allowed:
        return float(value)
    elif isinstance(value, str) and str in allowed:
        return value
    names = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
    hint = "'text' in a config file; --key=text on the command line" if str in allowed else names
    raise UserError(f"{key} must be {names}, got {value!r} ({type(value).__name__}); write it as {hint}")


def _set(cfg, key, value, source):
    types = typing.get_type_hints(TrainConfig)
    if key not in types:
        if key in RENAMED:
            raise UserError(f"{source}: unknown key {key!r}: {RENAMED[key]}")
        close = difflib.get_close_matches(key, types, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see TrainConfig in train.py for the keys"
        raise UserError(f"{source}: unknown config key {key!r}; {hint}")
    setattr(cfg, key, _coerce(key, value, types[key]))


def usage():
    """This module's docstring, then every config key with its default and its comment, in the order
    and with the section comments of TrainConfig's source."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    lines = ["usage: python train.py [CONFIG_FILE ...] [--key=value ...]", "", __doc__.strip(), "",
             "config keys (--key=default  comment):"]
    for line in inspect.getsource(TrainConfig).splitlines()[1:]:
        text = line.strip()
        if text.startswith("def "):
            break
        name, _, rest = text.partition(":")
        if text.startswith("#"):
            lines.append(f"  {text[1:].strip()}")
        elif name in defaults:
            key = f"    --{name}={defaults[name]!r}"
            comment = rest.partition("  # ")[2]
            lines.append(f"{key:<40}  {comment}".rstrip())
    return "\n".join(lines)


def parse_args(argv):
    """TrainConfig from config files (executed Python) and --key=value overrides (Python literals);
    --help prints usage() and exits."""
    cfg = TrainConfig()
    for arg in argv:
        if arg in ("-h", "--help"):
            print(usage())
            raise SystemExit(0)
        if arg.startswith("--"):
            key, eq, text = arg[2:].partition("=")
            if not eq:
                raise UserError(f"override {arg!r} must look like --key=value")
            try:
                value = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                value = text  # a bare word, e.g. --out_dir=out/run1
            _set(cfg, key, value, "command line")
        else:
            path = Path(arg)
            if not path.is_file():
                raise UserError(f"config file {arg} not found (arguments are config files or --key=value)")
            namespace = {}
            try:
                exec(compile(path.read_text(), str(path), "exec"), namespace)
            except Exception as e:
                raise UserError(f"config file {arg} failed to run: {type(e).__name__}: {e}") from None
            for key, value in namespace.items():
                if not key.startswith("_") and not callable(value) and not isinstance(value, type(sys)):
                    _set(cfg, key, value, arg)
    cfg.validate()
    return cfg


# ----------------------------------------------------------------------------- data

def open_split(data_dir, split, block_size, meta):
    """Check data_dir/<split>.bin (uint16 tokens, against meta.json's count); returns its token count."""
    path = data_dir / f"{split}.bin"
    prepare = data_dir / "prepare.py"
    fix = f"run `python {prepare.relative_to(REPO) if prepare.is_relative_to(REPO) else prepare}`" \
        if prepare.exists() else "point data_dir at a folder with train.bin/val.bin (see data/)"
    why = split_problem(data_dir, split, meta)
    if why is not None:
        raise UserError(f"{path} {why}: {fix}" + ("" if why == "not found" else " again"))
    tokens = path.stat().st_size // 2
    if tokens <= block_size:
        raise UserError(f"{path} has {tokens} tokens, not more than block_size={block_size}: "
                        f"lower block_size or use more data")
    return tokens


def get_batch(path, seed, stream, it, index, batch_size, block_size, device):
    """Micro-batch (x, y) number `index` of iteration `it` in a stream: random windows of the
    memmap drawn from a generator seeded by (seed, stream, it, index) alone."""
    data = np.memmap(path, dtype=np.uint16, mode="r")  # re-opened per batch: a long-lived memmap leaks memory
    ix = np.random.default_rng([seed, stream, it, index]).integers(0, len(data) - block_size, size=batch_size)
    x = torch.from_numpy(np.stack([data[i:i + block_size] for i in ix]).astype(np.int64))
    y = torch.from_numpy(np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64))
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(device, non_blocking=True)
    return x.to(device), y.to(device)


def reseed(seed, stream, it, index):
    """Seed torch's RNG (dropout masks, Sophia's sampled labels) for one micro-step."""
    torch.manual_seed(int(np.random.SeedSequence([seed, stream, it, index, 1]).generate_state(1)[0]))


def lr_at(it, cfg):
    """Linear warmup for warmup_iters, then cosine decay to min_lr at lr_decay_iters."""
    if not cfg.decay_lr:
        return cfg.learning_rate
    if it < cfg.warmup_iters:
        return cfg.learning_rate * (it + 1) / (cfg.warmup_iters + 1)
    if it >= cfg.final_lr_decay_iters:
        return cfg.final_min_lr
    ratio = (it - cfg.warmup_iters) / max(1, cfg.final_lr_decay_iters - cfg.warmup_iters)
    return cfg.final_min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (cfg.learning_rate - cfg.final_min_lr)


# ----------------------------------------------------------------------------- the step

def train_loss(model, x, y):
    return model(x, y)[1]


def gnb_estimator_loss(model, x, y):
    """Sophia-G's Gauss-Newton-Bartlett estimator: cross-entropy against labels sampled from the
    model's own predictions (the real targets y are not used)."""
    return gnb_loss(model(x)[0])


def forward_backward(run, loss_fn, stream, it, n_micro):
    """Accumulate into .grad the gradient of loss_fn averaged over n_micro micro-batches on each
    rank (and by DDP over ranks); returns the mean loss on this rank, as a tensor (no host sync).

    The training step and Sophia-G's Hessian refresh both run through here, with a different
    loss_fn and stream. DDP all-reduces gradients on the last micro-step, FSDP reduce-scatters them
    after each one. The next micro-batch is read while the device runs the current forward pass
    (CUDA kernels are asynchronous). The data and the random draws are iteration it + run.data_offset's."""
    batch_size = run.plan.hess_batch_size if stream == HESSIAN else run.cfg.batch_size
    data_it = it + run.data_offset

    def load(micro):
        index = run.dist.rank * n_micro + micro  # global micro-batch index: independent of world size
        with run.timer("data"):
            return index, get_batch(run.train_path, run.cfg.seed, stream, data_it, index, batch_size,
                                    run.cfg.block_size, run.dist.device)

    total = torch.zeros((), device=run.dist.device)
    index, (x, y) = load(0)
    for micro in range(n_micro):
        reseed(run.cfg.seed, stream, data_it, index)
        last = micro == n_micro - 1
        with grad_sync(run.model, last):
            with run.timer("forward_backward"), run.autocast:
                loss = loss_fn(run.model, x, y) / n_micro
            if not last:
                index, (x, y) = load(micro + 1)
            with run.timer("forward_backward"):
                run.scaler.scale(loss).backward()
        total += loss.detach()
    return total


def clip_gradients(run, clip):
    """Clip the (unscaled) gradients to global norm `clip` (0: no clipping); returns the norm before
    clipping, a float64 tensor. torch.nn.utils.clip_grads_with_norm_'s rule, with the coefficient cast
    to the gradients' dtype: a float64 coefficient on float32 gradients sends CUDA's _foreach_mul_ to
    its one-kernel-per-tensor path (the product is the same: the CPU casts the coefficient too)."""
    grads = [p.grad for p in run.raw_model.parameters() if p.grad is not None]
    norm = global_norm(grads)
    if clip > 0:
        coef = (clip / (norm + 1e-6)).clamp(max=1.0)
        for device, [same] in by_device_and_dtype([grads]):
            torch._foreach_mul_(same, coef.to(device, same[0].dtype))
    return norm


def hutchinson_refresh(run, it):
    """Sophia-H: u * (H u) of the training loss, averaged over the Hessian batch and all ranks.
    Runs on the raw model under the math attention kernel: fused kernels have no double backward."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    params = [p for p in run.raw_model.parameters() if p.requires_grad]
    total = None
    data_it = it + run.data_offset
    for micro in range(run.plan.hess_micro):
        index = run.dist.rank * run.plan.hess_micro + micro
        x, y = get_batch(run.train_path, run.cfg.seed, HESSIAN, data_it, index, run.plan.hess_batch_size,
                         run.cfg.block_size, run.dist.device)
        reseed(run.cfg.seed, HESSIAN, data_it, index)
        with sdpa_kernel(SDPBackend.MATH), run.autocast:
            loss = run.raw_model(x, y)[1] / run.plan.hess_micro
        estimates = hutchinson(loss, params)
        total = estimates if total is None else torch._foreach_add(total, estimates)
    for t in total:
        all_reduce_mean(t, run.dist)
    return params, total


def hessian_due(run, it):
    """Sophia refreshes its Hessian estimate after every hess_interval-th step."""
    return run.cfg.is_sophia and (it + 1) % run.cfg.hess_interval == 0


def usable_estimate(run: "Run", norm: torch.Tensor) -> bool:
    """Whether a Hessian estimate whose (estimator's gradient) norm is `norm` may enter the EMA: the norm
    is finite and, with the spike guard on, not an outlier. One host sync for both."""
    if not run.spikes.on:
        return bool(torch.isfinite(norm).item())
    finite, *judged = torch.cat([torch.isfinite(norm).view(1).double(), run.spikes.judge("hessian", [norm])]).tolist()
    return finite > 0 and not run.spikes.read("hessian", judged).outlier


def refresh_hessian(run, it):
    """Update Sophia's Hessian EMA from a fresh batch; returns False if the estimate was not finite or
    (run.spikes.outlier("hessian")) an outlier."""
    with run.timer("hessian"):
        run.optimizer.zero_grad(set_to_none=True)
        if run.cfg.optimizer_name == "sophiah":
            params, estimates = hutchinson_refresh(run, it)
            if not usable_estimate(run, global_norm(estimates)):
                return False
            run.optimizer.update_hessian(params, estimates)
            return True
        forward_backward(run, gnb_estimator_loss, HESSIAN, it, run.plan.hess_micro)
        if run.scaler.is_enabled():
            # fp16: undo the loss scale by hand. The refresh is not an optimizer step, so the GradScaler's
            # unscale_/update, which would count it as one towards growing the scale, are left alone
            torch._foreach_mul_([p.grad for p in run.raw_model.parameters() if p.grad is not None],
                                1.0 / run.scaler.get_scale())
        norm = clip_gradients(run, run.cfg.grad_clip if run.cfg.hess_grad_clip else 0.0)
        usable = usable_estimate(run, norm)
        if usable:
            run.optimizer.update_hessian(num_tokens=run.plan.hess_tokens)
        run.optimizer.zero_grad(set_to_none=True)
        return usable


class StepResult(typing.NamedTuple):
    ok: bool  # False: the update was skipped (state untouched): the loss or the gradient was not finite, or an outlier
    loss: float  # mean training loss over the step's batch
    norm: float  # gradient norm before clipping
    stop: bool  # True on every rank when any rank has received SIGTERM
    groups: dict  # on a logged step that updated: its telemetry (telemetry.py, Sophia's win_rate too), else {}
    outlier: bool = False  # True: skipped as an outlier against the spike guard's window (spikes.py)


def train_step(run, it):
    """One optimizer step at iteration `it`. A step that ends a log_interval also measures the
    per-group telemetry, before a Hessian refresh changes the state it describes (on rank 0, or on
    every rank under FSDP, whose reductions need them all)."""
    set_lr(run.optimizer, lr_at(it, run.cfg))
    loss = forward_backward(run, train_loss, TRAIN, it, run.plan.grad_accum)
    with run.timer("optimizer"):
        # the SIGTERM flag rides on the loss all-reduce, so all ranks stop at the same step at no extra cost
        # (a fill on the device: torch.tensor(value, device=cuda) would be a blocking host-to-device copy)
        loss, stop = all_reduce_mean(torch.stack([loss, torch.full_like(loss, float(run.sigterm[0]))]), run.dist)
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
    return StepResult(ok, loss_f, norm_f, stop_f > 0, groups, outlier)


def iteration(run, it):
    """An iteration of the loop, without its bookkeeping: the optimizer step, then Sophia's Hessian
    refresh when it is due after a step that updated. Returns the step and the refresh's outcome
    (None: no refresh; False: its estimate was not finite and was skipped)."""
    step = train_step(run, it)
    refreshed = refresh_hessian(run, it) if step.ok and hessian_due(run, it) else None
    return step, refreshed


@torch.no_grad()
def evaluate(run):
    """Mean loss over eval_iters fixed batches of each split (the same batches at every eval, for
    every optimizer with the same seed), shared out across ranks. Every rank runs the same number of forward passes (FSDP's all-gathers
    need every rank); where eval_iters does not divide evenly, a rank's extra pass is not counted."""
    run.eval_model.eval()
    out = {}
    world = run.dist.world_size
    for key, path, stream in (("val/loss", run.val_path, VAL), ("eval/train_loss", run.train_path, EVAL_TRAIN)):
        total = torch.zeros((), device=run.dist.device)
        for k in range(run.dist.rank, math.ceil(run.cfg.eval_iters / world) * world, world):
            x, y = get_batch(path, run.cfg.seed, stream, 0, k % run.cfg.eval_iters, run.cfg.batch_size,
                             run.cfg.block_size, run.dist.device)
            with run.autocast:
                loss = run.eval_model(x, y)[1].float()
            if k < run.cfg.eval_iters:
                total += loss
        if run.dist.ddp:
            torch_dist.all_reduce(total)
        out[key] = total.item() / run.cfg.eval_iters
    run.eval_model.train()
    return out


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
    min_lr: float  # where the cosine schedule ends
    lr_decay_iters: int  # ... and when
    data_dir: Path


def batch_sizes_that_fit(total: int, world_size: int) -> str:
    """The end of a batch-divisibility error: which micro-batch sizes would work."""
    fits = [str(b) for b in range(1, total // world_size + 1) if total % (b * world_size) == 0]
    if not fits:
        return f" ({total} sequences cannot be split evenly over world_size={world_size}: use a multiple of it)"
    return f" (batch_size values that fit world_size={world_size}: {', '.join(fits)})"


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """The compute dtype 'auto' stands for: bfloat16 on a CUDA device that has it, else float32."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def resolve(cfg, world_size, device):
    """The Plan of a run: the batch split over ranks and micro-steps (training and Hessian), the dtype,
    whether to compile, the ends of the lr schedule and the data directory. No side effects; a
    UserError when the batch does not split or the dtype does not fit the device."""
    per_step = cfg.batch_size * world_size
    if cfg.total_batch_size % per_step:
        raise UserError(f"total_batch_size={cfg.total_batch_size} is not divisible by batch_size * world_size = "
                        f"{cfg.batch_size} * {world_size}: change batch_size or total_batch_size"
                        f"{batch_sizes_that_fit(cfg.total_batch_size, world_size)}")
    hess_total = cfg.hess_total_batch_size or cfg.total_batch_size
    hess_batch = min(cfg.batch_size, hess_total // world_size)
    if cfg.is_sophia and (hess_batch == 0 or hess_total % (hess_batch * world_size)):
        raise UserError(f"hess_total_batch_size={hess_total} is not divisible by batch_size * world_size = "
                        f"{cfg.batch_size} * {world_size}: use a multiple of it, or a multiple of world_size "
                        f"below it{batch_sizes_that_fit(hess_total, world_size)}")
    dtype = resolve_dtype(cfg.dtype, device)
    return Plan(grad_accum=cfg.total_batch_size // per_step, hess_micro=hess_total // (hess_batch * world_size),
                hess_batch_size=hess_batch, hess_tokens=hess_total * cfg.block_size,
                tokens_per_iter=cfg.total_batch_size * cfg.block_size, dtype=dtype,
                compile=device.type == "cuda" if cfg.compile is None else cfg.compile,
                fused=use_fused(cfg.fused_optimizer, device),
                tf32=device.type == "cuda", min_lr=cfg.final_min_lr, lr_decay_iters=cfg.final_lr_decay_iters,
                data_dir=Path(cfg.data_dir) if cfg.data_dir else REPO / "data" / cfg.dataset)


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
    autocast: typing.Any
    checkpointer: Checkpointer
    timer: StepTimer  # where a step's time goes; off unless scripts/bench/bench_train.py switches it on
    telemetry: Telemetry  # per-group update sizes (and Sophia's clipping), measured on logged steps
    spikes: SpikeGuard  # the outlier windows and recent skips (spikes.py)
    sigterm: list[bool] = field(default_factory=lambda: [False])  # [True] once this rank has received SIGTERM
    hellaswag: typing.Optional[list] = None  # HellaSwag examples when hellaswag_interval > 0
    data_offset: int = 0  # iteration it trains on the data of it + data_offset (skip_batches + the rollbacks')


def check_writable(out_dir, rank):
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write_test_{rank}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise UserError(f"out_dir {out_dir} is not writable ({e.strerror}): choose another --out_dir") from None


def build_model(cfg, vocab=GPT2, log=print):
    """A new run's GPT: OpenAI's or a Hugging Face GPT-2 (init_from), else fresh weights."""
    if not is_pretrained(cfg.init_from):
        return GPT(config_from_dict({**asdict(cfg), "vocab_size": model_vocab_size(vocab)}))
    if vocab != GPT2:
        raise UserError(f"init_from={cfg.init_from!r} has GPT-2's vocabulary but dataset {cfg.dataset!r} is "
                        f"written in {describe(vocab)}: train it from scratch, or use a GPT-2 dataset")
    log(f"initialising from the GPT-2 weights of {cfg.init_from}")
    model = load_gpt2(cfg.init_from, dropout=cfg.dropout)
    if cfg.block_size > model.config.block_size:
        raise UserError(f"block_size={cfg.block_size} is longer than the context of {cfg.init_from} "
                        f"({model.config.block_size} tokens): set block_size <= {model.config.block_size}")
    if cfg.block_size < model.config.block_size:
        model.crop_block_size(cfg.block_size)
    return model


def setup(cfg, dist, log):
    """Everything before the first step: checks, data, resume, model, optimizer and logging.
    Returns the Run, the loop's state (what a checkpoint carries besides weights) and the log."""
    if int(os.environ.get("TORCHELASTIC_MAX_RESTARTS", 0)) and os.environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True":
        log("warning: torchrun shares its TCP store with the workers, so restarted workers can read the last "
            "attempt's addresses and fail to connect (pytorch/pytorch#135712): "
            "export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=1 before torchrun --max-restarts")
    plan = resolve(cfg, dist.world_size, dist.device)
    out_dir, device = Path(cfg.out_dir), dist.device
    if plan.tf32:
        torch.set_float32_matmul_precision("high")
    check_writable(out_dir, dist.rank)
    meta = read_meta(plan.data_dir)
    open_split(plan.data_dir, "train", cfg.block_size, meta)
    open_split(plan.data_dir, "val", cfg.block_size, meta)
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
    state = {"iter": 0, "tokens_seen": 0, "time_s": 0.0, "best_val_loss": float("inf"), "last_eval_iter": -1,
             "skipped_steps": 0, "clipped_steps": 0, "skipped_hessian": 0, "wandb_run_id": None,
             "spike_skipped_steps": 0, "spike_skipped_hessian": 0, "rollbacks": 0, "rollback_batches": 0,
             "spike_guard": None}
    if checkpointer.resuming:
        checkpointer.load(raw_model, optimizer, scaler, state)
    autocast = nullcontext() if plan.dtype == "float32" else torch.autocast(device.type, getattr(torch, plan.dtype))
    run = Run(cfg=cfg, plan=plan, dist=dist, train_path=plan.data_dir / "train.bin",
              val_path=plan.data_dir / "val.bin", raw_model=raw_model, model=model, eval_model=eval_model,
              optimizer=optimizer, scaler=scaler, autocast=autocast, checkpointer=checkpointer,
              timer=StepTimer(device), telemetry=Telemetry(raw_model, optimizer, cfg.is_sophia),
              spikes=SpikeGuard(cfg, device), hellaswag=examples,
              data_offset=cfg.skip_batches + state["rollback_batches"])
    run.spikes.load_state_dict(state["spike_guard"])

    metrics = None
    if dist.master:
        config = {**asdict(cfg), "world_size": dist.world_size, "grad_accum": plan.grad_accum,
                  "hess_micro": plan.hess_micro, "tokens_per_iter": plan.tokens_per_iter, "dtype_resolved": plan.dtype,
                  "device_resolved": str(device), "compile_resolved": plan.compile,
                  "fused_optimizer_resolved": plan.fused, "tf32": plan.tf32, "min_lr_resolved": plan.min_lr,
                  "lr_decay_iters_resolved": plan.lr_decay_iters, "n_params": raw_model.num_params(),
                  "n_params_non_embedding": raw_model.num_params(non_embedding=True),
                  "provenance": provenance(device)}
        with atomic_write(out_dir / "config.json") as f:
            f.write(json.dumps(config, indent=2) + "\n")
        wandb_run = None
        if cfg.wandb_log:
            wandb_run = start_wandb(cfg, out_dir, state["wandb_run_id"], config)
            state["wandb_run_id"] = wandb_run.id
        metrics = MetricsLog(out_dir, state["iter"] if checkpointer.resuming else None, wandb_run)
    log(f"{raw_model.num_params() / 1e6:.2f}M parameters ({raw_model.num_params(non_embedding=True) / 1e6:.2f}M "
        f"non-embedding) | {describe(vocab)} | {cfg.optimizer_name} | "
        f"{dist.world_size} x {device} {plan.dtype}{' compiled' if plan.compile else ''} | "
        f"{plan.tokens_per_iter:,} tokens/iter = {dist.world_size} ranks x {plan.grad_accum} micro-steps x "
        f"{cfg.batch_size} x {cfg.block_size}"
        + (f" | Hessian every {cfg.hess_interval} iters on {plan.hess_tokens:,} tokens" if cfg.is_sophia else ""))
    shape = {k: getattr(raw_model.config, k) for k in ("n_layer", "n_embd", "block_size", "bias")}
    memory = estimate(replace(cfg, **shape), dist.world_size, plan.dtype, raw_model.config.vocab_size)
    log(f"{cfg.parallelism} memory estimate: {memory.line()}" + (
        f"; this GPU has {torch.cuda.get_device_properties(device).total_memory / GB:.1f} GB"
        if device.type == "cuda" else ""))
    return run, state, metrics


# ----------------------------------------------------------------------------- the loop

class Preempted(Exception):
    """SIGTERM (a scheduler's pre-emption): a checkpoint was written and the run stopped."""


def catch_sigterm(run):
    """On SIGTERM (pre-emption) set run.sigterm[0], which the next step shares with all ranks; returns
    the handler it replaced (None off the main thread), to be put back when training ends."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, lambda *_: run.sigterm.__setitem__(0, True))


def save(run, state):
    state["spike_guard"] = run.spikes.state_dict() if run.spikes.on else None  # off: a later resume starts afresh
    run.checkpointer.save(run.raw_model, run.optimizer, run.scaler, state)


def log_step(run, state, since, step, metrics, log):
    """The metrics row and the console line of the steps since the last one (`since`: the state's
    iter, tokens_seen and time_s then). Call on every rank: under FSDP the norms need all of them."""
    cfg = run.cfg
    param_norm = global_norm(list(run.raw_model.parameters())).item()
    loss, norm = step.loss, step.norm
    if metrics is None:
        return
    steps, tokens, seconds = (state[k] - v for k, v in zip(("iter", "tokens_seen", "time_s"), since))
    utilisation = mfu(run.raw_model.flops_per_token(), tokens, seconds, run.dist.world_size,
                      peak_flops(run.dist.device, cfg.peak_flops))
    row = {"iter": state["iter"], "tokens_seen": state["tokens_seen"], "time_s": state["time_s"],
           "train/loss": loss, "lr": lr_at(state["iter"] - 1, cfg), "grad_norm": norm, "param_norm": param_norm,
           "mfu": utilisation, "ms_per_iter": 1000 * seconds / steps, "tokens_per_s": tokens / seconds,
           "train/clip_rate": state["clipped_steps"] / state["iter"], "skipped_steps": state["skipped_steps"]}
    if cfg.is_sophia:  # a skipped step has no clipping to report
        row |= {"train/win_rate": math.nan, "optim/hessian_norm": math.nan, "skipped_hessian": state["skipped_hessian"]}
    if run.spikes.on:
        row |= {"spike/skipped_steps": state["spike_skipped_steps"], "spike/rollbacks": state["rollbacks"],
                "spike/data_offset": run.data_offset, **run.spikes.row()}
        if cfg.is_sophia:
            row["spike/skipped_hessian"] = state["spike_skipped_hessian"]
    row |= step.groups
    metrics.log(row)
    eta = (cfg.max_iters - state["iter"]) * seconds / steps
    log(f"iter {state['iter']}/{cfg.max_iters} | loss {loss:.4f} | lr {row['lr']:.2e} | "
        f"{row['ms_per_iter']:.0f} ms/iter | {row['tokens_per_s']:,.0f} tok/s"
        + (f" | mfu {100 * utilisation:.1f}%" if utilisation is not None else "")
        + (f" | win {row['train/win_rate']:.3f}" if cfg.is_sophia else "")
        + f" | eta {eta / 60:.1f} min")


def train(cfg, dist):
    log = (lambda *a: print(*a, flush=True)) if dist.master else (lambda *a: None)
    run, state, metrics = setup(cfg, dist, log)
    since = (state["iter"], state["tokens_seen"], state["time_s"])  # the last log line's
    consecutive_skips = 0
    stop = False  # SIGTERM on some rank, learnt in the last step
    previous_sigterm = catch_sigterm(run)
    try:
        while True:
            it = state["iter"]

            # evaluate and checkpoint, every eval_interval and at the end
            if (it % cfg.eval_interval == 0 or it >= cfg.max_iters) and state["last_eval_iter"] != it:
                losses = evaluate(run)
                state["last_eval_iter"] = it
                state["best_val_loss"] = min(state["best_val_loss"], losses["val/loss"])
                line = f"eval iter {it}: val loss {losses['val/loss']:.4f}, train loss {losses['eval/train_loss']:.4f}"
                if run.hellaswag is not None and (it % cfg.hellaswag_interval == 0 or it >= cfg.max_iters):
                    t0 = time.perf_counter()
                    losses.update(hellaswag.evaluate(run.eval_model, run.hellaswag, cfg.block_size,
                                                     cfg.batch_size * cfg.block_size, run.autocast, dist.device,
                                                     dist.rank, dist.world_size))
                    line += (f", hellaswag acc_norm {losses['eval/hellaswag_acc_norm']:.4f} acc "
                             f"{losses['eval/hellaswag_acc']:.4f} ({time.perf_counter() - t0:.1f} s)")
                log(line)
                if metrics is not None:
                    metrics.log({"iter": it, "tokens_seen": state["tokens_seen"], "time_s": state["time_s"], **losses})
                if it > 0:
                    save(run, state)
                if cfg.eval_only:
                    break
            if it >= cfg.max_iters:
                break

            # pre-empted (SIGTERM on any rank during the last step): checkpoint and stop
            if stop:
                save(run, state)
                raise Preempted(f"SIGTERM at iter {it}: checkpoint written to {cfg.out_dir}; "
                                f"continue with --init_from=auto")

            # one optimizer step (skipped when the loss or the gradient is not finite, or an outlier)
            t0 = time.perf_counter()
            step, refreshed = iteration(run, it)
            ok, loss, norm, stop = step.ok, step.loss, step.norm, step.stop
            tokens = run.plan.tokens_per_iter
            rollback_due = False
            if ok:
                consecutive_skips = 0
                state["clipped_steps"] += int(cfg.grad_clip > 0 and norm > cfg.grad_clip)
            elif step.outlier:
                state["spike_skipped_steps"] += 1
                log(f"iter {it + 1}: outlier step, update skipped: {run.spikes.describe('step')}")
                rollback_due = run.spikes.skipped(it)
            else:
                consecutive_skips += 1
                state["skipped_steps"] += 1
                log(f"iter {it + 1}: non-finite loss ({loss}) or gradient norm ({norm}): update skipped")
                if consecutive_skips >= cfg.max_skipped_steps:
                    raise UserError(f"{consecutive_skips} consecutive non-finite steps at iter {it + 1}: stopping. "
                                    f"Lower learning_rate or raise rho (Sophia) / weight_decay, then continue from the "
                                    f"last good checkpoint in {cfg.out_dir} (if any) with --init_from=auto")

            # Sophia: the Hessian estimate refreshed every hess_interval steps
            if refreshed is not None:
                tokens += run.plan.hess_tokens
                if not refreshed and run.spikes.outlier("hessian"):
                    state["spike_skipped_hessian"] += 1
                    log(f"iter {it + 1}: outlier Hessian estimate, refresh skipped: {run.spikes.describe('hessian')}")
                elif not refreshed:
                    state["skipped_hessian"] += 1
                    log(f"iter {it + 1}: non-finite Hessian estimate: refresh skipped")

            # the one clock: training time, evals and checkpoints excluded. No device synchronize here: the
            # step's loss read-back waits for the device, which meanwhile runs the optimizer step while the
            # host reads the next batch
            state["time_s"] += time.perf_counter() - t0
            state["iter"] = it + 1
            state["tokens_seen"] += tokens

            # log
            if state["iter"] % cfg.log_interval == 0:
                log_step(run, state, since, step, metrics, log)
                since = (state["iter"], state["tokens_seen"], state["time_s"])

            # outlier steps close together: back to the last checkpoint, the data moved on past them
            if rollback_due and roll_back(run, state, metrics, it, log):
                since = (state["iter"], state["tokens_seen"], state["time_s"])
                consecutive_skips = 0
    finally:
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if metrics is not None:
            metrics.close()
    log(f"done: {state['iter']} iters, {state['tokens_seen']:,} tokens, best val loss "
        f"{state['best_val_loss']:.4f}, {state['time_s']:.0f} s of training; outputs in {cfg.out_dir}")


def main(argv=None):
    cfg = parse_args(sys.argv[1:] if argv is None else argv)
    dist = setup_distributed(cfg)
    try:
        train(cfg, dist)
    finally:
        if dist.ddp:
            torch_dist.destroy_process_group()


def cli():
    """Command-line entry: user mistakes are one line on stderr and exit code 2, never a traceback;
    a pre-emption exits 143."""
    try:
        return run_cli(lambda _: main())
    except Preempted as e:
        say_stderr(f"stopped: {e}")
        return 143


if __name__ == "__main__":
    sys.exit(cli())
