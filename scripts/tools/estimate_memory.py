"""Training memory per rank for a config, estimated without a GPU (memory.py holds the model; docs/scaling.md).

    python scripts/tools/estimate_memory.py config/train_gpt2_large_sophiag.py --parallelism=ddp --world_size=8
    python scripts/tools/estimate_memory.py --table          # 125M..1.5B x DDP/FSDP on 8 GPUs, micro-batch that fits
    python scripts/tools/estimate_memory.py --measure config/train_tiny_sophiag.py   # estimate vs measured, CPU

Takes train.py's arguments plus --world_size=N (default 8); dtype 'auto' is taken as bfloat16. --measure trains the
config for a few steps on the CPU (fp32, one rank) and compares the peak resident memory training added with it.
"""

import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from errors import run_cli
from memory import GB, estimate, parameter_counts
from model import PADDED_VOCAB_SIZE
from provenance import REPO
from train import TrainConfig, parse_args, setup_distributed, train

SIZES = ("small", "medium", "large", "xl")
RESERVED_GB = 2.0  # CUDA context and allocator fragmentation, not in the estimate


def resolved_dtype(cfg: TrainConfig) -> str:
    return "bfloat16" if cfg.dtype == "auto" else cfg.dtype


def fitting_batch(cfg: TrainConfig, world_size: int, capacity_gb: float) -> str:
    """The largest micro-batch that divides the global batch and fits capacity_gb, and its memory (a table cell)."""
    per_rank = cfg.total_batch_size // world_size
    for b in sorted((b for b in range(1, per_rank + 1) if per_rank % b == 0), reverse=True):
        e = estimate(replace(cfg, batch_size=b), world_size, resolved_dtype(cfg), PADDED_VOCAB_SIZE)
        if e.total / GB + RESERVED_GB <= capacity_gb:
            return f"batch_size={b} ({e.total / GB:.1f} GB)"
    return "does not fit"


def table(world_size: int = 8) -> None:
    fits = f"micro-batch = the largest that fits with {RESERVED_GB:.0f} GB reserved (memory at that micro-batch)"
    print(f"Sophia-G, bf16, {world_size} GPUs, {fits}; AdamW needs the same, Lion 4 bytes/param less")
    print("| model | params | parallelism | state per rank (weights+grads+optimizer) | 40 GB GPU | 80 GB GPU |")
    print("|---|---|---|---|---|---|")
    for size in SIZES:
        base = parse_args([str(REPO / "config" / f"train_gpt2_{size}_sophiag.py")])
        n = parameter_counts(base, PADDED_VOCAB_SIZE)[0]
        for parallelism in ("ddp", "fsdp"):
            for checkpointing in (False, True):
                cfg = replace(base, parallelism=parallelism, activation_checkpointing=checkpointing)
                e = estimate(cfg, world_size, "bfloat16", PADDED_VOCAB_SIZE)
                cells = [fitting_batch(cfg, world_size, capacity) for capacity in (40, 80)]
                name = parallelism + (" + activation_checkpointing" if checkpointing else "")
                state = (e.weights + e.gradients + e.optimizer) / GB
                print(f"| {size} | {n / 1e6:.0f}M | {name} | {state:.1f} GB | {cells[0]} | {cells[1]} |")


def resident_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status (--measure needs Linux)")


def measure(argv: list[str]) -> None:
    import resource  # Unix only

    with tempfile.TemporaryDirectory() as out_dir:
        cfg = parse_args(argv)
        steps = cfg.hess_interval + 1
        overrides = f"--device=cpu --dtype=float32 --compile=False --max_iters={steps} --eval_interval={steps}".split()
        overrides += ["--eval_iters=2", "--wandb_log=False", "--parallelism=ddp", f"--out_dir={out_dir}"]
        cfg = parse_args(argv + overrides)
        before = resident_bytes()
        train(cfg, setup_distributed(cfg))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before  # Linux: ru_maxrss in KiB
    e = estimate(cfg, 1, "float32", PADDED_VOCAB_SIZE)
    measured = f"resident memory added by training, fp32, CPU, 1 rank, batch_size={cfg.batch_size}"
    ratio = f"estimate / measured = {e.total / peak:.2f}"
    print(f"estimate {e.total / GB:.3f} GB, measured peak {peak / GB:.3f} GB ({measured}): {ratio}")


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv == ["--table"]:
        return table()
    if argv[:1] == ["--measure"]:
        return measure(argv[1:])
    world = [a for a in argv if a.startswith("--world_size=")]
    world_size = int(world[-1].split("=", 1)[1]) if world else 8
    cfg = parse_args([a for a in argv if not a.startswith("--world_size=")])
    n = parameter_counts(cfg, PADDED_VOCAB_SIZE)[0]
    e = estimate(cfg, world_size, resolved_dtype(cfg), PADDED_VOCAB_SIZE)
    shape = f"batch_size={cfg.batch_size} x block_size={cfg.block_size} | {resolved_dtype(cfg)}"
    shape += " | activation checkpointing" if cfg.activation_checkpointing else ""
    print(f"{n / 1e6:.0f}M parameters | {cfg.optimizer_name} | {cfg.parallelism} on {world_size} ranks | {shape}")
    for name in ("weights", "gradients", "optimizer", "activations"):
        print(f"  {name:14} {getattr(e, name) / GB:8.2f} GB")
    print(f"  {e.other_name:14} {e.other / GB:8.2f} GB")
    print(f"  {'total':14} {e.total / GB:8.2f} GB per rank (+ ~{RESERVED_GB:.0f} GB CUDA context and fragmentation)")


if __name__ == "__main__":
    sys.exit(run_cli(main))
