"""The command line of train.py: TrainConfig (every key, its default and its meaning) and parse_args.

    python train.py config/train_tiny_sophiag.py                      # laptop CPU
    torchrun --standalone --nproc_per_node=8 train.py config/train_gpt2_small_sophiag.py
    python train.py config/train_tiny_adamw.py --learning_rate=1e-3 --out_dir=out/x
    python train.py --help                                            # every config key

Config files are Python files that are executed; their top-level assignments, then the
`--key=value` overrides (parsed as Python literals, never evaluated), are applied to TrainConfig.
"""

import ast
import difflib
import inspect
import sys
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from errors import UserError
from hf import RELEASES, is_pretrained

OPTIMIZERS = ("sophiag", "sophiah", "adamw", "lion", "muon")
FUSED = ("sophiag", "sophiah", "adamw")  # those with a fused step (TrainConfig.fused_optimizer)
PARALLELISMS = ("ddp", "fsdp")


@dataclass
class TrainConfig:
    # I/O
    out_dir: str = "out"
    eval_interval: int = 2000
    eval_iters: int = 200  # batches per split in each evaluation
    log_interval: int = 10
    eval_only: bool = False  # evaluate once and exit
    init_from: str = "scratch"  # 'scratch' | 'resume' | 'auto' (resume if a checkpoint exists) | 'gpt2*' | a HF dir
    keep_last: int = 2  # checkpoints kept in out_dir
    max_skipped_steps: int = 20  # consecutive non-finite steps that stop the run
    # loss spikes (spikes.py, docs/reliability.md): a step whose loss or gradient norm lies more than spike_z standard
    # deviations above the last spike_window steps' (log scale) is skipped; Sophia: a Hessian estimate too
    spike_z: float = 6.0  # 0: off
    spike_window: int = 128
    spike_warmup: int = 128  # steps in the window before any is judged
    spike_rollback_skips: int = 5  # skips in spike_rollback_window steps that reload the newest checkpoint (0: never)
    spike_rollback_window: int = 100
    spike_rollback_batches: int = 200  # batches a rollback moves the data on past the last skip
    spike_max_rollbacks: int = 5  # rollbacks after which the run stops
    # HellaSwag accuracy (hellaswag.py)
    hellaswag_interval: int = 0  # at the evals of every hellaswag_interval-th iteration and at the end (0: off)
    hellaswag_data: str = ""  # the file data/hellaswag/prepare.py wrote ('': data/hellaswag/val.npz)
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
    # True: a fused step (AdamW: torch's kernel; Sophia: one torch.compile'd kernel per parameter)
    fused_optimizer: bool | None = None  # None: fused on CUDA, else foreach (Lion and Muon's only step)
    rho: float = 0.05  # Sophia's clipping threshold
    hess_interval: int = 10  # Sophia: refresh the Hessian estimate every k steps
    # sequences in each Hessian estimate (None: total_batch_size); below batch_size * world_size, each
    # rank draws one micro-batch of hess_total_batch_size / world_size sequences
    hess_total_batch_size: int | None = None
    hess_grad_clip: bool = True  # clip the estimator's gradient at grad_clip, as the official code does
    # Muon (optimizer_name='muon', docs/muon.md): learning_rate and weight_decay are Muon's, for the blocks' 2-D
    # weights; AdamW trains the rest with beta1, beta2 and muon_adamw_*, its lr scaled to peak at muon_adamw_lr
    muon_momentum: float = 0.95  # Nesterov momentum
    muon_adjust_lr_fn: str = "original"  # per-matrix lr: 'original' (Keller Jordan's) | 'match_rms_adamw' (AdamW's RMS)
    muon_adamw_lr: float = 3e-4
    muon_adamw_weight_decay: float = 0.01  # on the embeddings; none on gains and biases
    # learning-rate schedule: linear warmup, then cosine decay to min_lr
    decay_lr: bool = True
    warmup_iters: int = 2000
    lr_decay_iters: int | None = None  # None: max_iters
    min_lr: float | None = None  # None: learning_rate / 20 (the paper decays to ~0.05x)
    # system
    device: str = "auto"  # 'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'mps'
    dtype: str = "auto"  # 'auto' (bfloat16 on CUDA, else float32) | 'float32' | 'bfloat16' | 'float16'
    compile: bool | None = None  # None: on for CUDA, off elsewhere
    backend: str = "auto"  # process-group backend: 'auto' (nccl on CUDA, gloo on CPU) | 'nccl' | 'gloo'
    parallelism: str = "ddp"  # 'ddp': every rank holds the model | 'fsdp': weights, grads, optimizer state sharded
    activation_checkpointing: bool = False  # recompute each block in the backward pass: less memory, ~1/3 more compute
    peak_flops: float = 0.0  # one device's peak FLOP/s for MFU (0: A100/H100/H200 known, else MFU is not logged)

    def validate(self) -> None:
        ranges = (  # (keys, test, what their values must be)
            ("eval_interval eval_iters log_interval keep_last max_skipped_steps batch_size", lambda v: v >= 1, ">= 1"),
            ("total_batch_size block_size hess_interval spike_rollback_window", lambda v: v >= 1, ">= 1"),
            ("spike_rollback_skips spike_rollback_batches spike_max_rollbacks skip_batches", lambda v: v >= 0, ">= 0"),
            ("max_iters warmup_iters weight_decay muon_adamw_weight_decay peak_flops", lambda v: v >= 0, ">= 0"),
            ("learning_rate rho muon_adamw_lr", lambda v: v > 0, "> 0"),
            ("beta1 beta2 muon_momentum dropout", lambda v: 0 <= v < 1, "in [0, 1)"),
        )
        for names, ok, what in ranges:
            for name in names.split():
                if not ok(getattr(self, name)):
                    raise UserError(f"{name} must be {what}, got {getattr(self, name)}")
        choices = {
            "dtype": ("auto", "float32", "bfloat16", "float16"),
            "backend": ("auto", "nccl", "gloo"),
            "parallelism": PARALLELISMS,
            "muon_adjust_lr_fn": ("original", "match_rms_adamw"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                *most, last = map(repr, allowed)
                raise UserError(f"{name}={getattr(self, name)!r}: use {', '.join(most)} or {last}")
        if not self.spike_z >= 0:
            raise UserError(f"spike_z must be >= 0 (0 turns the spike guard off), got {self.spike_z}")
        if not self.grad_clip >= 0:
            raise UserError(f"grad_clip must be >= 0 (0 disables clipping), got {self.grad_clip}")
        if not 2 <= self.spike_warmup <= self.spike_window:
            raise UserError(
                f"spike_warmup={self.spike_warmup} must be between 2 and spike_window={self.spike_window}: a standard "
                f"deviation needs 2 values, and the window holds no more than spike_window"
            )
        if self.spike_rollback_skips > self.spike_rollback_window:
            raise UserError(
                f"spike_rollback_skips={self.spike_rollback_skips} skips never fit in spike_rollback_window="
                f"{self.spike_rollback_window} steps: lower it, or 0 to never roll back"
            )
        if self.hellaswag_interval < 0 or self.hellaswag_interval % self.eval_interval:
            raise UserError(
                f"hellaswag_interval={self.hellaswag_interval} must be 0 (off) or a multiple of "
                f"eval_interval={self.eval_interval}: HellaSwag runs with the evals"
            )
        if self.optimizer_name not in OPTIMIZERS:
            raise UserError(f"optimizer_name={self.optimizer_name!r} is not one of {', '.join(OPTIMIZERS)}")
        if self.fused_optimizer and self.optimizer_name not in FUSED:
            raise UserError(
                f"fused_optimizer=True but {self.optimizer_name} has no fused step (only {', '.join(FUSED)}): "
                f"leave fused_optimizer unset"
            )
        if self.init_from not in ("scratch", "resume", "auto") and not is_pretrained(self.init_from):
            raise UserError(
                f"init_from={self.init_from!r}: use 'scratch', 'resume', 'auto', one of {', '.join(RELEASES)} "
                f"or the path of a Hugging Face GPT-2 directory"
            )
        if self.parallelism == "fsdp" and self.optimizer_name == "sophiah":
            raise UserError(
                "optimizer_name='sophiah' does not run under parallelism='fsdp' (its Hutchinson estimator needs "
                "double backward through the unsharded parameters): use parallelism='ddp', or sophiag"
            )
        if self.parallelism == "fsdp" and self.dtype == "float16":
            raise UserError(
                "dtype='float16' is not supported with parallelism='fsdp': use dtype='bfloat16' (or float32)"
            )
        if self.min_lr is not None and not 0 <= self.min_lr <= self.learning_rate:
            raise UserError(f"min_lr={self.min_lr} must be between 0 and learning_rate={self.learning_rate}")
        if self.hess_total_batch_size is not None and self.hess_total_batch_size < 1:
            raise UserError(
                f"hess_total_batch_size must be >= 1 (or None for total_batch_size), got {self.hess_total_batch_size}"
            )
        if self.lr_decay_iters is not None and self.lr_decay_iters < self.warmup_iters:
            raise UserError(f"lr_decay_iters={self.lr_decay_iters} must be >= warmup_iters={self.warmup_iters}")
        if self.n_embd % self.n_head:
            raise UserError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}")

    @property
    def is_sophia(self) -> bool:
        return self.optimizer_name.startswith("sophia")

    @property
    def final_min_lr(self) -> float:
        return self.learning_rate / 20 if self.min_lr is None else self.min_lr

    @property
    def final_lr_decay_iters(self) -> int:
        return self.max_iters if self.lr_decay_iters is None else self.lr_decay_iters


# Keys of nanoGPT and of the official Sophia repo that mean something else here.
RENAMED = {
    "gradient_accumulation_steps": "it is derived: set total_batch_size (sequences per optimizer step, "
    "all GPUs together) and batch_size (micro-batch per GPU)",
    "total_bs": "it is called total_batch_size here (sequences per optimizer step)",
    "interval": "it is called hess_interval here",
    "always_save_checkpoint": "a checkpoint is written at every eval; keep_last bounds how many are kept",
}


def _coerce(key: str, value: Any, annotation: Any) -> Any:
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


def _set(cfg: TrainConfig, key: str, value: Any, source: str) -> None:
    types = typing.get_type_hints(TrainConfig)
    if key not in types:
        if key in RENAMED:
            raise UserError(f"{source}: unknown key {key!r}: {RENAMED[key]}")
        close = difflib.get_close_matches(key, types, n=1)
        hint = f"did you mean {close[0]!r}?" if close else "see python train.py --help for the keys"
        raise UserError(f"{source}: unknown config key {key!r}; {hint}")
    setattr(cfg, key, _coerce(key, value, types[key]))


def usage() -> str:
    """This module's docstring, then every config key with its default and comment, as in TrainConfig's source."""
    defaults = {f.name: f.default for f in fields(TrainConfig)}
    lines = ["usage: python train.py [CONFIG_FILE ...] [--key=value ...]", "", str(__doc__).strip(), ""]
    lines.append("config keys (--key=default  comment):")
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


def parse_args(argv: list[str]) -> TrainConfig:
    """TrainConfig from config files (executed Python) and --key=value overrides; --help prints usage() and exits."""
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
            namespace: dict[str, Any] = {}
            try:
                exec(compile(path.read_text(), str(path), "exec"), namespace)
            except Exception as e:
                raise UserError(f"config file {arg} failed to run: {type(e).__name__}: {e}") from None
            for key, value in namespace.items():
                if not key.startswith("_") and not callable(value) and not isinstance(value, type(sys)):
                    _set(cfg, key, value, arg)
    cfg.validate()
    return cfg
