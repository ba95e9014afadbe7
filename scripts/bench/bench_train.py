"""Training throughput of several optimizers in one run, through train.py's own step functions.

    python scripts/bench/bench_train.py config/train_tiny_sophiag.py --optimizers adamw,sophiag
    python scripts/bench/bench_train.py config/train_gpt2_small_sophiag.py --optimizers adamw,sophiag,lion \\
        --batch_size=12 --total_batch_size=480 --steps 20 --rounds 3
    torchrun --standalone --nproc_per_node=8 scripts/bench/bench_train.py config/train_gpt2_small_sophiag.py ...

Config files and --key=value overrides are train.py's (one set for every optimizer). Each entry of
--optimizers is an optimizer name, optionally followed by its own overrides, e.g.
`sophiag:hess_total_batch_size=8:fused_optimizer=True`. Every entry is set up by train.setup(),
warmed up (compilation, one Hessian refresh), then timed for --rounds rounds of --steps
iterations: train.iteration(), the loop's own step and Hessian refresh. The entries take turns at
every iteration (each one leading in turn), so that a load change on a shared machine hits all of
them alike. --steps should be a multiple of
hess_interval so that every round holds the same number of refreshes.

Printed per entry: ms per iteration (median over rounds, and range), training tokens/s, MFU (on a
GPU whose peak train.py knows, or --peak_flops), the share of the iteration spent in data loading,
forward+backward, the optimizer step and the Hessian refresh (train.py's StepTimer; 'other' is the
rest), its peak memory (CUDA), and its ms/iter as a ratio to AdamW's in the same round (median and
range over rounds; needs an adamw entry), beside memory.estimate's figure for its config. On CPU the
process's peak RSS is printed once. --json writes every number (for scripts/bench/gpu_check.py).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass

import torch
import torch.distributed as torch_dist

import train
from errors import run_cli
from memory import estimate
from parallel import setup_distributed
from timing import mfu, peak_flops

PARTS = ("data", "forward_backward", "optimizer", "hessian")


def parse(argv):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument(
        "--optimizers", default="adamw,sophiag", help="comma-separated entries: name[:key=value[:key=value...]]"
    )
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per entry and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per entry before the rounds")
    parser.add_argument("--json", help="also write every entry's numbers (and its config) to this JSON file")
    args, train_args = parser.parse_known_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--steps and --rounds must be >= 1, --warmup >= 0")
    entries = []
    for entry in args.optimizers.split(","):
        name, *overrides = entry.split(":")
        entries.append((entry, [f"--optimizer_name={name}"] + [f"--{o}" for o in overrides]))
    return args, train_args, entries


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Result:
    """One entry's measurements."""

    entry: str
    cfg: train.TrainConfig
    device: str
    world_size: int
    n_params: int
    flops_per_token: int  # model FLOPs of training, forward and backward
    ms_per_iter: list[float]  # one per round
    tokens_per_s: float  # training tokens (the Hessian refresh's not counted)
    mfu: float | None  # model FLOPs of training and refresh tokens / time / the device's peak
    shares: dict[str, float]  # PARTS and "other": fractions of the iteration
    peak_memory: int | None  # bytes allocated at the peak of set-up and warm-up (CUDA)
    vs_adamw: list[float] | None  # ms/iter / the adamw entry's, one per round
    warmup_s: float  # set-up, compilation and warm-up
    estimate: float  # memory.estimate's bytes per rank for the entry's config


def measure(train_args, entries, steps, rounds, warmup):
    """Set up every entry with train.setup(), warm it up, then time `rounds` rounds of `steps`
    iterations, the entries taking turns; returns one Result per entry, in order."""
    scratch = tempfile.TemporaryDirectory(prefix="bench_train_")
    quiet = lambda *a: None  # noqa: E731
    cfgs = [
        train.parse_args(
            train_args + extra + [f"--out_dir={scratch.name}/{i}", "--wandb_log=False", "--init_from=scratch"]
        )
        for i, (_, extra) in enumerate(entries)
    ]
    dist = setup_distributed(cfgs[0])
    say = print if dist.master else quiet
    runs, peak_mem, warmup_s = {}, {}, {}
    try:
        for (label, _), cfg in zip(entries, cfgs):
            device = dist.device
            before = torch.cuda.memory_allocated(device) if device.type == "cuda" else 0
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            run, _, metrics = train.setup(cfg, dist, quiet)
            if metrics is not None:
                metrics.close()
            for it in range(warmup):
                train.iteration(run, it)
            if cfg.is_sophia:
                train.refresh_hessian(run, warmup)  # compiles the refresh's graph before timing
            synchronize(device)
            if device.type == "cuda":
                peak_mem[label] = torch.cuda.max_memory_allocated(device) - before
            warmup_s[label] = time.perf_counter() - t0
            say(f"{label}: set up and warmed up in {warmup_s[label]:.1f} s")
            run.timer.enabled = True
            runs[label] = run
        timings = {label: [] for label in runs}  # per round: (seconds, parts)
        for r in range(rounds):
            seconds = dict.fromkeys(runs, 0.0)
            for run in runs.values():
                run.timer.reset()
            for i in range(steps):
                it = warmup + r * steps + i
                order = list(runs)[i % len(runs) :] + list(runs)[: i % len(runs)]  # each entry leads in turn
                for label in order:
                    synchronize(dist.device)
                    t0 = time.perf_counter()
                    train.iteration(runs[label], it)
                    synchronize(dist.device)
                    seconds[label] += time.perf_counter() - t0
            for label, run in runs.items():
                timings[label].append((seconds[label], run.timer.seconds()))
            say(
                f"round {r + 1}/{rounds}: "
                + ", ".join(f"{label} {1000 * timings[label][-1][0] / steps:.0f} ms/iter" for label in runs)
            )
        baseline = next((label for label, run in runs.items() if run.cfg.optimizer_name == "adamw"), None)
        return [
            summarize(
                label,
                run,
                timings[label],
                timings.get(baseline),
                steps,
                warmup,
                peak_mem.get(label),
                warmup_s[label],
                dist,
            )
            for label, run in runs.items()
        ]
    finally:
        if dist.ddp:
            torch_dist.destroy_process_group()
        scratch.cleanup()


def summarize(label, run, timings, baseline, steps, warmup, peak_memory, warmup_s, dist):
    """A Result from one entry's (seconds, parts) per round and the adamw entry's (baseline, or None)."""
    rounds = len(timings)
    seconds = sum(s for s, _ in timings)
    shares = {p: sum(parts.get(p, 0.0) for _, parts in timings) / seconds for p in PARTS}
    shares["other"] = 1 - sum(shares.values())
    tokens = run.plan.tokens_per_iter * steps * rounds
    refreshes = sum(train.hessian_due(run, it) for it in range(warmup, warmup + steps * rounds))
    utilisation = mfu(
        run.raw_model.flops_per_token(),
        tokens + refreshes * run.plan.hess_tokens,
        seconds,
        dist.world_size,
        peak_flops(dist.device, run.cfg.peak_flops),
    )
    vs_adamw = None if baseline is None else [a / b for (a, _), (b, _) in zip(timings, baseline)]
    memory = estimate(run.cfg, dist.world_size, run.plan.dtype, run.raw_model.config.vocab_size).total
    return Result(
        label,
        run.cfg,
        str(dist.device),
        dist.world_size,
        run.raw_model.num_params(),
        run.raw_model.flops_per_token(),
        [1000 * s / steps for s, _ in timings],
        tokens / seconds,
        utilisation,
        shares,
        peak_memory,
        vs_adamw,
        warmup_s,
        memory,
    )


def main(argv: list[str] | None = None) -> None:
    args, train_args, entries = parse(sys.argv[1:] if argv is None else argv)
    results = measure(train_args, entries, args.steps, args.rounds, args.warmup)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 prints
        report(args, results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump([asdict(r) for r in results], f, indent=1)


def report(args, results):
    first = results[0]
    print(
        f"\n{first.world_size} x {first.device}, {args.rounds} rounds of {args.steps} iterations per entry "
        f"(after {args.warmup} warm-up); ms/iter and ratios: median [min-max] over rounds"
    )
    header = (
        f"{'entry':<44} {'ms/iter':>20} {'tok/s':>9} {'MFU':>6} {'data':>6} {'fwd+bwd':>8} {'optim':>6} "
        f"{'hessian':>8} {'other':>6} {'memory':>9} {'estimate':>9} {'vs adamw':>22}"
    )
    print(header)
    for r in results:
        ratio = (
            "-"
            if r.vs_adamw is None
            else f"{statistics.median(r.vs_adamw):.3f}x [{min(r.vs_adamw):.3f}-{max(r.vs_adamw):.3f}]"
        )
        memory = "-" if r.peak_memory is None else f"{r.peak_memory / 2**30:.2f} GiB"
        guess = f"{r.estimate / 2**30:.2f} GiB"
        ms = f"{statistics.median(r.ms_per_iter):.1f} [{min(r.ms_per_iter):.0f}-{max(r.ms_per_iter):.0f}]"
        print(
            f"{r.entry:<44} {ms:>20} {r.tokens_per_s:>9,.0f} "
            f"{'-' if r.mfu is None else f'{100 * r.mfu:.1f}%':>6} "
            + " ".join(f"{100 * r.shares[p]:>{w}.1f}%" for p, w in zip(PARTS, (5, 7, 5, 7)))
            + f" {100 * r.shares['other']:>5.1f}% {memory:>9} {guess:>9} {ratio:>22}"
        )
    if not first.device.startswith("cuda"):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(f"peak RSS of the process (all entries): {rss:.2f} GiB")


if __name__ == "__main__":
    sys.exit(run_cli(main))
