"""Training throughput of several optimizers in one run, through train.py's own step functions.

    python scripts/bench/bench_train.py config/train_tiny_sophiag.py --optimizers adamw,sophiag
    python scripts/bench/bench_train.py config/train_gpt2_small_sophiag.py --optimizers adamw,sophiag,lion \\
        --batch_size=12 --total_batch_size=480 --steps 20 --rounds 3
    torchrun --standalone --nproc_per_node=8 scripts/bench/bench_train.py config/train_gpt2_small_sophiag.py ...
    python scripts/bench/bench_train.py --refresh config/train_tiny_sophiag.py      # the Hessian refresh's levers

Config files and --key=value overrides are train.py's; an --optimizers entry is an optimizer name with optional
overrides of its own (`sophiag:hess_total_batch_size=8:fused_optimizer=True`). After set-up and warm-up, the entries
take turns at every train.iteration() (each leading in turn) for --rounds rounds of --steps (a multiple of
hess_interval). Per entry: ms/iter, tokens/s, MFU, the StepTimer's shares, peak memory (CUDA; on CPU the peak RSS)
beside memory.estimate's, and ms/iter over the adamw entry's in the same round; --json writes it all.

--refresh prices each way of refreshing Sophia-G's Hessian as overhead on hess_interval training steps (fresh batches
of the training batch / each of --fractions, labels sampled from the training forward, gnb_loss's sampling against
torch.multinomial); one process, total_batch_size = batch_size. Details: docs/performance.md.
"""

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import torch
import torch.distributed as torch_dist
import torch.nn.functional as F

import train
from errors import UserError, run_cli
from memory import estimate
from parallel import setup_distributed
from scripts.bench import timed
from sophia import gnb_loss
from timing import mfu, peak_flops

PARTS = ("data", "forward_backward", "optimizer", "hessian")


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter, allow_abbrev=False)
    parser.add_argument("--optimizers", default="adamw,sophiag", help="comma-separated name[:key=value[:key=value...]]")
    parser.add_argument("--steps", type=int, default=10, help="timed iterations per entry and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per entry before the rounds")
    parser.add_argument("--json", help="also write every entry's numbers (and its config) to this JSON file")
    parser.add_argument("--refresh", action="store_true", help="time the Hessian refresh's levers instead")
    parser.add_argument("--repeats", type=int, default=5, help="with --refresh: timings per lever")
    parser.add_argument("--fractions", default="1,2,4,8", help="with --refresh: the training batch / these")
    args, train_args = parser.parse_known_args(argv)
    if args.steps < 1 or args.rounds < 1 or args.warmup < 0 or args.repeats < 1:
        parser.error("--steps, --rounds and --repeats must be >= 1, --warmup >= 0")
    return args, train_args


def set_up(cfg: train.TrainConfig, dist: Any) -> Any:
    """train.setup()'s Run, quietly and without a metrics file."""
    run, _, metrics = train.setup(cfg, dist, lambda *a: None)
    if metrics is not None:
        metrics.close()
    return run


@dataclass
class Result:
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


def measure(args: argparse.Namespace, train_args: list[str]) -> list[Result]:
    """One Result per entry: each set up and warmed up, then `rounds` rounds of `steps` iterations, in turns."""
    scratch, cfgs = tempfile.TemporaryDirectory(prefix="bench_train_"), {}
    for i, entry in enumerate(args.optimizers.split(",")):
        name, *overrides = entry.split(":")
        extra = [f"--optimizer_name={name}", *(f"--{o}" for o in overrides), f"--out_dir={scratch.name}/{i}"]
        cfgs[entry] = train.parse_args(train_args + extra + ["--wandb_log=False", "--init_from=scratch"])
    dist = setup_distributed(next(iter(cfgs.values())))
    device, cuda = dist.device, dist.device.type == "cuda"
    runs, peak_mem, warmup_s = {}, {}, {}
    try:
        for label, cfg in cfgs.items():
            before = torch.cuda.memory_allocated(device) if cuda else 0
            if cuda:
                torch.cuda.reset_peak_memory_stats(device)
            t0 = time.perf_counter()
            runs[label] = run = set_up(cfg, dist)
            for it in range(args.warmup):
                train.iteration(run, it)
            if cfg.is_sophia:
                train.refresh_hessian(run, args.warmup)  # compiles the refresh's graph before timing
            if cuda:
                torch.cuda.synchronize(device)
                peak_mem[label] = torch.cuda.max_memory_allocated(device) - before
            warmup_s[label] = time.perf_counter() - t0
            if dist.master:
                print(f"{label}: set up and warmed up in {warmup_s[label]:.1f} s")
            run.timer.enabled = True
        timings: dict[str, list] = {label: [] for label in runs}  # per round: (seconds, parts)
        for r in range(args.rounds):
            seconds = dict.fromkeys(runs, 0.0)
            for run in runs.values():
                run.timer.reset()
            for i in range(args.steps):
                it, order = args.warmup + r * args.steps + i, list(runs)
                for label in order[i % len(runs) :] + order[: i % len(runs)]:  # each entry leads in turn
                    seconds[label] += timed(partial(train.iteration, runs[label], it), device)
            for label, run in runs.items():
                timings[label].append((seconds[label], run.timer.seconds()))
            ms = ", ".join(f"{label} {1000 * timings[label][-1][0] / args.steps:.0f} ms/iter" for label in runs)
            if dist.master:
                print(f"round {r + 1}/{args.rounds}: {ms}")
        base = next((timings[label] for label, run in runs.items() if run.cfg.optimizer_name == "adamw"), None)

        def summarize(label: str, run: Any) -> Result:
            seconds, model, cfg = sum(s for s, _ in timings[label]), run.raw_model, run.cfg
            shares = {p: sum(parts.get(p, 0.0) for _, parts in timings[label]) / seconds for p in PARTS}
            shares["other"] = 1 - sum(shares.values())
            tokens = run.plan.tokens_per_iter * args.steps * args.rounds
            timed_iters = range(args.warmup, args.warmup + args.steps * args.rounds)
            refreshes = sum(train.hessian_due(run, it) for it in timed_iters)
            peak = peak_flops(dist.device, cfg.peak_flops)
            all_tokens = tokens + refreshes * run.plan.hess_tokens
            utilisation = mfu(model.flops_per_token(), all_tokens, seconds, dist.world_size, peak)
            vs_adamw = None if base is None else [a / b for (a, _), (b, _) in zip(timings[label], base)]
            memory = estimate(cfg, dist.world_size, run.plan.dtype, model.config.vocab_size).total
            ms = [1000 * s / args.steps for s, _ in timings[label]]
            head = (label, cfg, str(dist.device), dist.world_size, model.num_params(), model.flops_per_token(), ms)
            tail = (peak_mem.get(label), vs_adamw, warmup_s[label], memory)
            return Result(*head, tokens / seconds, utilisation, shares, *tail)

        return [summarize(label, run) for label, run in runs.items()]
    finally:
        if dist.distributed:
            torch_dist.destroy_process_group()
        scratch.cleanup()


def report(args: argparse.Namespace, results: list[Result]) -> None:
    first = results[0]
    rounds = f"{args.rounds} rounds of {args.steps} iterations per entry (after {args.warmup} warm-up)"
    print(f"\n{first.world_size} x {first.device}, {rounds}; ms/iter and ratios: median [min-max] over rounds")
    head = f"{'entry':<44} {'ms/iter':>20} {'tok/s':>9} {'MFU':>6} {'data':>6} {'fwd+bwd':>8} {'optim':>6}"
    print(f"{head} {'hessian':>8} {'other':>6} {'memory':>9} {'estimate':>9} {'vs adamw':>22}")
    for r in results:
        vs = r.vs_adamw
        ratio = "-" if vs is None else f"{statistics.median(vs):.3f}x [{min(vs):.3f}-{max(vs):.3f}]"
        memory = "-" if r.peak_memory is None else f"{r.peak_memory / 2**30:.2f} GiB"
        ms = f"{statistics.median(r.ms_per_iter):.1f} [{min(r.ms_per_iter):.0f}-{max(r.ms_per_iter):.0f}]"
        utilisation = "-" if r.mfu is None else f"{100 * r.mfu:.1f}%"
        shares = " ".join(f"{100 * r.shares[p]:>{w}.1f}%" for p, w in zip((*PARTS, "other"), (5, 7, 5, 7, 5)))
        memory += f" {f'{r.estimate / 2**30:.2f} GiB':>9}"
        print(f"{r.entry:<44} {ms:>20} {r.tokens_per_s:>9,.0f} {utilisation:>6} {shares} {memory:>9} {ratio:>22}")
    if not first.device.startswith("cuda"):
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(f"peak RSS of the process (all entries): {rss:.2f} GiB")


def refresh(args: argparse.Namespace, train_args: list[str]) -> None:
    """--refresh: each lever of the Hessian refresh timed on one model, as overhead on a step."""
    scratch = tempfile.TemporaryDirectory(prefix="bench_refresh_")
    base = train_args + ["--wandb_log=False", "--init_from=scratch", "--optimizer_name=sophiag", "--compile=False"]
    cfg = train.parse_args(base + [f"--out_dir={scratch.name}"])
    if cfg.total_batch_size != cfg.batch_size:
        raise UserError("--refresh times one micro-batch per step: set total_batch_size = batch_size")
    dist = setup_distributed(cfg)
    if dist.distributed:
        raise UserError("--refresh runs in one process: run it with python, not torchrun")
    sizes = []
    for text in args.fractions.split(","):
        f = int(text) if text.strip().isdigit() else 0
        if f < 1 or cfg.batch_size % f:
            raise UserError(f"--fractions: batch_size={cfg.batch_size} is not divisible by {text!r}")
        sizes.append(cfg.batch_size // f)
    extra = {b: [f"--hess_total_batch_size={b}", f"--out_dir={scratch.name}/{b}"] for b in sizes}
    runs = {b: set_up(train.parse_args(base + extra[b]), dist) for b in sizes}
    run = runs[sizes[0]]
    model, device = run.model, dist.device
    x, y = train.get_batch(run.train_path, cfg.seed, train.TRAIN, 0, 0, cfg.batch_size, cfg.block_size, device)

    def plain() -> None:
        with run.autocast:
            loss = model(x, y)[1]
        loss.backward()
        model.zero_grad(set_to_none=True)

    def from_training_forward(b: int) -> None:
        with run.autocast:
            logits, loss = model(x, y)
            estimator = gnb_loss(logits[:b])
        estimator.backward(retain_graph=True)
        run.optimizer.update_hessian(num_tokens=b * cfg.block_size)
        model.zero_grad(set_to_none=True)
        loss.backward()
        model.zero_grad(set_to_none=True)

    with torch.no_grad(), run.autocast:
        logits = model(x)[0].float().view(-1, model.config.vocab_size)
    levers: dict[str, Callable[[], Any]] = {"step": lambda: train.train_step(run, 0)}
    levers |= {f"fresh batch of {b}": partial(train.refresh_hessian, runs[b], 0) for b in sizes}
    levers["plain forward+backward"] = plain
    levers |= {f"training forward, {b}": partial(from_training_forward, b) for b in sizes}
    levers["sampling: gnb_loss"] = lambda: gnb_loss(logits)
    levers["sampling: torch.multinomial"] = lambda: torch.multinomial(F.softmax(logits, dim=-1), 1)
    for fn in levers.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {label: [] for label in levers}
    for r in range(args.repeats):  # the levers take turns, each leading in turn
        for label in list(levers)[r % len(levers) :] + list(levers)[: r % len(levers)]:
            times[label].append(timed(levers[label], device))
    ms = {label: 1000 * statistics.median(t) for label, t in times.items()}
    for b in sizes:
        ms[f"training forward, {b}"] -= ms["plain forward+backward"]
    del ms["plain forward+backward"]
    step = ms["step"] * cfg.hess_interval
    hess = f"hess_interval={cfg.hess_interval}"
    print(f"{cfg.batch_size} x {cfg.block_size} tokens per step, {device}, {hess}, medians of {args.repeats}")
    print(f"{'':<32} {'ms':>9} {'overhead':>9}")
    for label, t in ms.items():
        print(f"{label:<32} {t:>9.1f}" + ("" if label == "step" else f" {100 * t / step:>8.1f}%"))
    scratch.cleanup()


def main(argv: list[str] | None = None) -> None:
    args, train_args = parse(sys.argv[1:] if argv is None else argv)
    if args.refresh:
        refresh(args, train_args)
        return
    results = measure(args, train_args)
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 prints
        report(args, results)
        if args.json:
            with open(args.json, "w") as f:
                json.dump([asdict(r) for r in results], f, indent=1)


if __name__ == "__main__":
    sys.exit(run_cli(main))
