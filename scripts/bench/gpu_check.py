"""One prepared command for a GPU: measures what the README cannot measure on a CPU.

    python scripts/gpu_check.py --out DIR [--budget_s 480] [--commit HASH]
    python scripts/gpu_check.py --out DIR --smoke       # the same code path on the CPU, at a tiny size

Checks the environment first (torch >= 2.11, CUDA, the GPU's name and memory, bf16, triton), one
line per piece, and stops with exit code 2 when a piece is missing. Trains on the prepared
data/openwebtext bins when they are there, else on synthetic uint16 tokens written to a scratch
folder at start. Then the steps, in order of value, each timed:

  a. the suite's CUDA-only tests (marked @pytest.mark.cuda);
  b. scripts/bench_train.py at GPT-2 small (124M), bf16 + compile: adamw, sophiag with the paper's
     refresh and with a quarter-batch one, lion, muon: ms/iter, tokens/s, MFU, time shares, peak
     memory against memory.estimate;
  c. compiled bf16 against fp32 eager at 124M: the same batches, the loss gap;
  d1. Sophia-G at 355M: ms/iter, MFU, peak memory against the estimate;
  e1, e2. the same at 1.5B under FSDP on one GPU (a one-rank process group), activation
     checkpointing off, then on;
  d2. the same at 770M (last: the first to go when time is short).

Each step's time is estimated before it starts, from its FLOPs at an assumed throughput plus an
assumed set-up and compile time, both replaced by what the earlier steps measured; a step that the
budget left cannot hold is skipped with a note, and a step still running at the end of the budget
is stopped, so the command ends in time. DIR receives report.json (every number, the GPU, torch and
CUDA versions, the commit) and report.md (the tables), rewritten after every step, and the command
prints report.md. --smoke runs every step on the CPU in fp32 (bf16 autocast in step c) without
torch.compile, at a 2-layer, 16-wide size, in under 30 s of CPU time (tests/test_gpu_check.py).
"""
import argparse
import datetime
import gc
import importlib.util
import json
import math
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]

import train
from data.common import GPT2_VOCAB_SIZE
from errors import UserError
from memory import GB, estimate, parameter_counts
from model import PADDED_VOCAB_SIZE, peak_flops
from parallel import setup_distributed
from scripts.bench import bench_train
MIN_TORCH = (2, 11)
CONFIG = {size: str(REPO / "config" / f"train_gpt2_{size}_sophiag.py") for size in ("small", "medium", "large", "xl")}


@dataclass
class Mode:
    """How big each step is, and what its time estimate assumes, on a GPU or in --smoke."""
    overrides: list  # train.py overrides for every step
    accumulation: int  # micro-steps per optimizer step in steps b and d
    bench: tuple  # (timed iterations per round, rounds, warm-up iterations) per entry in step b; d and e: 1 round
    gap_iters: int  # step c's iterations
    synthetic_tokens: int  # train split; val gets a tenth
    mfu_assumed: float  # achieved / peak FLOP/s of compiled bf16 training, until step b measures it
    flops_assumed: float  # achieved FLOP/s where the peak is unknown (and on a CPU)
    slow_run: float  # step c's other run (fp32 eager on a GPU, bf16 on a CPU) takes this many times longer
    setup_s: float  # set-up of one entry, without compiling
    compile_s: float  # compiling the training and refresh graphs: this ...
    compile_layer_s: float  # ... plus this per transformer block in the graph
    init_param_s: float  # building the model on the CPU, per parameter
    tests_s: float  # step a


GPU = Mode(overrides=["--device=cuda", "--dtype=bfloat16", "--compile=True"], accumulation=4, bench=(10, 2, 2),
           gap_iters=30, synthetic_tokens=4_000_000, mfu_assumed=0.35, flops_assumed=100e12, slow_run=10,
           setup_s=2, compile_s=30, compile_layer_s=2, init_param_s=5e-9, tests_s=60)
SMOKE = Mode(overrides=["--device=cpu", "--dtype=float32", "--compile=False", "--n_layer=2", "--n_head=2",
                        "--n_embd=16", "--block_size=16", "--batch_size=2", "--hess_interval=2"],
             accumulation=2, bench=(2, 1, 0), gap_iters=3, synthetic_tokens=100_000, mfu_assumed=0.0,
             flops_assumed=2e10, slow_run=8, setup_s=0.5, compile_s=0, compile_layer_s=0, init_param_s=5e-8,
             tests_s=15)


class OutOfTime(BaseException):
    """The budget's end (SIGALRM): a BaseException, so that no `except Exception` on the way swallows it."""


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--out", required=True, help="folder for report.json and report.md")
    parser.add_argument("--budget_s", type=float, default=480, help="seconds for all the steps together")
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU at a tiny size, no compile")
    parser.add_argument("--commit", default="", help="the commit, where .git did not travel with the tree")
    args = parser.parse_args(argv)
    if args.budget_s <= 0:
        raise UserError(f"--budget_s must be > 0, got {args.budget_s}")
    return args


# ----------------------------------------------------------------------------- environment and data

def git_commit():
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if out.returncode != 0:
        return "unknown"
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment(smoke, commit):
    """What the report records about the machine, and one line per missing piece."""
    cuda = torch.cuda.is_available()
    env = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
           "cuda_available": cuda, "gpu": None, "gpu_memory_gib": None, "bf16": None, "peak_flops": None,
           "triton": importlib.util.find_spec("triton") is not None, "commit": commit or git_commit(),
           "host": platform.node()}
    if cuda:
        device = torch.device("cuda")
        props = torch.cuda.get_device_properties(device)
        env.update(gpu=props.name, gpu_memory_gib=props.total_memory / GB, bf16=torch.cuda.is_bf16_supported(),
                   peak_flops=peak_flops(device))
    version = tuple(int(v) for v in torch.__version__.split("+")[0].split(".")[:2])
    missing = []
    if version < MIN_TORCH:
        missing.append(f"torch >= {'.'.join(map(str, MIN_TORCH))}: this is {torch.__version__}")
    if not smoke:
        if not cuda:
            missing.append("CUDA: torch.cuda.is_available() is False ("
                           + (f"torch is built for CUDA {torch.version.cuda})" if torch.version.cuda else
                              "a CPU-only torch build)"))
        elif not env["bf16"]:
            missing.append(f"bf16: {env['gpu']} does not support it")
        if not env["triton"]:
            missing.append("triton: torch.compile needs it on CUDA")
    return env, missing


def environment_lines(env):
    gpu = (f"{env['gpu']}, {env['gpu_memory_gib']:.1f} GiB, bf16 {'yes' if env['bf16'] else 'no'}, dense bf16 peak "
           + (f"{env['peak_flops'] / 1e12:.0f} TFLOP/s" if env["peak_flops"] else "unknown (no MFU)")
           if env["gpu"] else "none")
    return [f"python {env['python']}, torch {env['torch']}, CUDA {env['cuda'] or 'none'} "
            f"({'available' if env['cuda_available'] else 'not available'}), triton {'yes' if env['triton'] else 'no'}",
            f"GPU: {gpu}", f"commit {env['commit']}"]


def synthetic_tokens(n, seed):
    """n GPT-2 token ids with something to learn: Zipf-distributed, and at every other position (on
    average) a fixed function of the token before, so that the loss falls within a few steps."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, GPT2_VOCAB_SIZE + 1)
    tokens = rng.choice(GPT2_VOCAB_SIZE, size=n, p=p / p.sum())
    follows = np.flatnonzero(rng.random(n - 1) < 0.5) + 1
    tokens[follows] = (tokens[follows - 1] * 7 + 3) % GPT2_VOCAB_SIZE
    return tokens.astype(np.uint16)


def data_dir(scratch, n_tokens, block_size):
    """The prepared data/openwebtext bins when they are there and valid, else synthetic ones in scratch,
    with the meta.json that the prepare scripts write; returns (folder, what it holds)."""
    prepared = REPO / "data" / "openwebtext"
    if (prepared / "train.bin").is_file():
        try:
            train.open_split(prepared, "train", block_size)
            train.open_split(prepared, "val", block_size)
            return prepared, "data/openwebtext (prepared bins)"
        except UserError as e:
            print(f"data/openwebtext is not usable ({e}): synthetic tokens instead")
    folder = Path(scratch) / "data"
    folder.mkdir()
    splits = {"train": synthetic_tokens(n_tokens, 0), "val": synthetic_tokens(n_tokens // 10, 1)}
    for split, tokens in splits.items():
        tokens.tofile(folder / f"{split}.bin")
    meta = {"tokenizer": "gpt2", "vocab_size": GPT2_VOCAB_SIZE, "dtype": "uint16", "source": "synthetic (gpu_check)",
            "splits": {s: {"tokens": len(t), "bytes": 2 * len(t)} for s, t in splits.items()}}
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return folder, f"synthetic: {n_tokens:,} Zipf-distributed tokens, half of them a function of the one before"


# ----------------------------------------------------------------------------- time estimates

class Pace:
    """What the time estimates assume: the mode's guesses until a step measures the real values."""

    def __init__(self, mode, peak):
        self.mode = mode
        self.flops_per_s = mode.mfu_assumed * peak if peak else mode.flops_assumed
        self.setup_scale = 1.0  # measured / estimated set-up (compiling included)

    def setup_s(self, cfg, compiles=True):
        """Set-up and warm-up of one entry; compiles=False when its graphs are compiled already."""
        mode = self.mode
        n = parameter_counts(cfg, PADDED_VOCAB_SIZE)[0]
        layers = 1 if cfg.parallelism == "fsdp" else cfg.n_layer  # FSDP compiles one block, reused by all
        compile_s = mode.compile_s + mode.compile_layer_s * layers if compiles else 0
        return self.setup_scale * (mode.setup_s + compile_s + mode.init_param_s * n)

    def train_s(self, cfg, iterations):
        """Compiled bf16 iterations of cfg, the Hessian refreshes included."""
        n = parameter_counts(cfg, PADDED_VOCAB_SIZE)[0]
        flops_per_token = 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size  # model.flops_per_token
        refresh = (cfg.hess_total_batch_size or cfg.total_batch_size) / cfg.total_batch_size / cfg.hess_interval
        recompute = 4 / 3 if cfg.activation_checkpointing else 1  # each block's forward runs twice
        tokens = iterations * cfg.total_batch_size * cfg.block_size * (1 + refresh)
        return tokens * flops_per_token * recompute / self.flops_per_s

    def bench_s(self, cfgs, steps, rounds, warmup):
        """A bench_train run: the first entry compiles, the others reuse its graphs."""
        iterations = steps * rounds + warmup + 1
        return sum(self.setup_s(cfg, compiles=i == 0) + self.train_s(cfg, iterations) for i, cfg in enumerate(cfgs))

    def learn(self, results):
        """Take the throughput and the set-up time that a bench_train run measured."""
        self.flops_per_s = statistics.median(r.tokens_per_s * r.flops_per_token for r in results)
        guessed = sum(self.setup_s(r.cfg, compiles=i == 0) for i, r in enumerate(results))
        self.setup_scale *= sum(r.warmup_s for r in results) / guessed


# ----------------------------------------------------------------------------- the steps

def cuda_tests(timeout):
    """pytest on the tests marked @pytest.mark.cuda, in the files that use the marker."""
    files = sorted(str(p.relative_to(REPO)) for p in (REPO / "tests").glob("test_*.py")
                   if "pytest.mark.cuda" in p.read_text())
    if not files:
        return {"files": [], "summary": "no test is marked @pytest.mark.cuda", "returncode": None}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *files],
                         cwd=REPO, capture_output=True, text=True, timeout=timeout)
    lines = out.stdout.strip().splitlines()
    return {"files": files, "returncode": out.returncode, "summary": lines[-1] if lines else out.stderr.strip()[-300:],
            "output_tail": (out.stdout + out.stderr)[-4000:]}


def bench_rows(results):
    """report.json's rows for bench_train Results, with memory.estimate's figure for the same config."""
    rows = []
    for r in results:
        cfg = r.cfg
        guess = estimate(cfg, r.world_size, cfg.dtype, PADDED_VOCAB_SIZE).total
        rows.append({
            "entry": r.entry, "params": r.n_params, "parallelism": cfg.parallelism,
            "activation_checkpointing": cfg.activation_checkpointing, "batch_size": cfg.batch_size,
            "total_batch_size": cfg.total_batch_size, "block_size": cfg.block_size,
            "hess_total_batch_size": cfg.hess_total_batch_size or cfg.total_batch_size, "dtype": cfg.dtype,
            "compile": cfg.compile, "ms_per_iter": statistics.median(r.ms_per_iter),
            "ms_per_iter_rounds": r.ms_per_iter,
            "tokens_per_s": r.tokens_per_s, "mfu": r.mfu, "shares": r.shares,
            "vs_adamw": None if r.vs_adamw is None else statistics.median(r.vs_adamw),
            "peak_memory_gib": None if r.peak_memory is None else r.peak_memory / GB,
            "estimate_gib": guess / GB,
            "measured_over_estimate": None if r.peak_memory is None else r.peak_memory / guess,
            "setup_and_warmup_s": r.warmup_s})
    return rows


def loss_gap(base, iters, scratch):
    """The same iterations on the same batches, from the same initial weights, compiled in bf16 and eager
    in fp32: the training loss of each step and the gap."""
    runs = {}
    for overrides in (["--dtype=bfloat16"], ["--dtype=float32", "--compile=False"]):
        cfg = train.parse_args(base + overrides + [f"--out_dir={scratch}/gap_{len(runs)}", "--wandb_log=False"])
        t0 = time.perf_counter()
        run, _, metrics = train.setup(cfg, setup_distributed(cfg), lambda *a: None)
        metrics.close()
        losses = [bench_train.iteration(run, it) for it in range(iters)]
        runs[f"{cfg.dtype} {'compiled' if cfg.compile else 'eager'}"] = {"losses": losses,
                                                                          "seconds": time.perf_counter() - t0}
        del run
    (a, b) = (r["losses"] for r in runs.values())
    gaps = [x - y for x, y in zip(a, b)]
    last = gaps[-10:]
    return {"iters": iters, "runs": runs, "gaps": gaps, "max_abs_gap": max(abs(g) for g in gaps),
            "final_gap": gaps[-1], "mean_gap_last_steps": statistics.mean(last), "last_steps": len(last)}


@dataclass
class Step:
    key: str
    title: str
    estimate: object  # Pace -> seconds
    run: object  # () -> dict, the step's result


def plan(mode, data, scratch, pace, deadline):
    """The steps, in order of value."""
    base = [f"--data_dir={data}"] + mode.overrides
    steps, rounds, warmup = mode.bench

    def config(size, *overrides, accumulation=mode.accumulation):
        """train.py arguments: the size's Sophia-G config with `accumulation` micro-batches per step."""
        args = [CONFIG[size]] + base + list(overrides)
        return args + [f"--total_batch_size={train.parse_args(args).batch_size * accumulation}"]

    def bench(args, optimizers, rounds=1):
        """(estimate, run) of a scripts/bench_train.py run, set up by its own argument parsing."""
        _, train_args, entries = bench_train.parse(args + ["--optimizers", ",".join(optimizers), "--steps", str(steps),
                                                           "--rounds", str(rounds), "--warmup", str(warmup)])
        cfgs = [train.parse_args(train_args + extra) for _, extra in entries]

        def run():
            torch._dynamo.reset()  # compile as a fresh process would (no shapes marked dynamic by earlier steps)
            results = bench_train.measure(train_args, entries, steps, rounds, warmup)
            pace.learn(results)
            return {"rows": bench_rows(results)}
        return (lambda p: p.bench_s(cfgs, steps, rounds, warmup)), run

    small = config("small")
    quarter = train.parse_args(small).total_batch_size // 4
    gap_args = config("small", f"--warmup_iters={mode.gap_iters // 3}", accumulation=1)
    gap_cfg = train.parse_args(gap_args)
    return [
        Step("a", "the suite's CUDA-only tests", lambda p: mode.tests_s,
             lambda: cuda_tests(max(1.0, deadline - time.monotonic()))),
        Step("b", "124M, every optimizer: throughput, time shares, memory",
             *bench(small, ["adamw", "sophiag", f"sophiag:hess_total_batch_size={quarter}", "lion", "muon"],
                    rounds)),
        Step("c", f"124M: {'compiled ' if gap_cfg.compile else ''}bf16 vs fp32 eager, {mode.gap_iters} steps on the "
                  f"same batches",
             lambda p: (2 * p.setup_s(gap_cfg, compiles=False)
                        + (1 + mode.slow_run) * p.train_s(gap_cfg, mode.gap_iters)),
             lambda: loss_gap(gap_args, mode.gap_iters, scratch)),
        Step("d1", "355M, Sophia-G", *bench(config("medium"), ["sophiag"])),
        Step("e1", "1.5B, FSDP on one GPU, Sophia-G, without activation checkpointing",
             *bench(config("xl", "--activation_checkpointing=False", accumulation=1), ["sophiag"])),
        Step("e2", "1.5B, FSDP on one GPU, Sophia-G, with activation checkpointing",
             *bench(config("xl", "--activation_checkpointing=True", accumulation=1), ["sophiag"])),
        Step("d2", "770M, Sophia-G", *bench(config("large"), ["sophiag"])),
    ]


# ----------------------------------------------------------------------------- the report

def finite(value):
    """report.json's numbers: NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def fmt(value, spec, unit=""):
    return "-" if value is None else f"{value:{spec}}{unit}"


def bench_table(rows, with_ratio):
    lines = ["| entry | params | ms/iter | tok/s | MFU | data | fwd+bwd | optim | hessian | other |"
             + (" vs AdamW |" if with_ratio else "") + " peak memory | estimate | measured / estimate |",
             "|---|---|---|---|---|---|---|---|---|---|" + ("---|" if with_ratio else "") + "---|---|---|"]
    for r in rows:
        shares = " | ".join(f"{100 * r['shares'][p]:.1f}%" for p in (*bench_train.PARTS, "other"))
        lines.append(f"| {r['entry']} | {r['params'] / 1e6:.0f}M | {r['ms_per_iter']:.1f} | {r['tokens_per_s']:,.0f} | "
                     f"{fmt(None if r['mfu'] is None else 100 * r['mfu'], '.1f', '%')} | {shares} |"
                     + (f" {fmt(r['vs_adamw'], '.3f', 'x')} |" if with_ratio else "")
                     + f" {fmt(r['peak_memory_gib'], '.2f', ' GiB')} | {r['estimate_gib']:.2f} GiB | "
                       f"{fmt(r['measured_over_estimate'], '.2f')} |")
    return lines


def markdown(report):
    env = report["environment"]
    lines = [f"# GPU check: {env['gpu'] or ('CPU (--smoke)' if report['smoke'] else 'no GPU')}", "",
             f"{report['started_utc']}, commit {env['commit']}, torch {env['torch']}, CUDA {env['cuda'] or 'none'}, "
             f"Python {env['python']}; data: {report['data'] or '-'}; budget {report['budget_s']:.0f} s, "
             f"{report['elapsed_s']:.0f} s used", "", *(f"missing: {line}\n" for line in report["missing"])]
    if report["steps"]:
        lines += ["| step | what | estimate | took | status |", "|---|---|---|---|---|"]
    for s in report["steps"]:
        lines.append(f"| {s['key']} | {s['title']} | {s['estimate_s']:.0f} s | {fmt(s['seconds'], '.0f', ' s')} | "
                     f"{s['status']}{': ' + s['note'] if s['note'] else ''} |")
    for s in report["steps"]:
        result = s["result"]
        if result is None:
            continue
        lines += ["", f"## {s['key']}. {s['title']}", ""]
        if s["key"] == "a":
            lines.append(f"`pytest -m cuda {' '.join(result['files'])}`: {result['summary']}")
        elif s["key"] == "c":
            shown = checkpoints(result["iters"])
            lines += ["| run | " + " | ".join(f"loss at step {i + 1}" for i in shown) + " | seconds |",
                      "|---|" + "---|" * (len(shown) + 1)]
            for name, run in result["runs"].items():
                lines.append(f"| {name} | " + " | ".join(fmt(run["losses"][i], ".4f") for i in shown)
                             + f" | {run['seconds']:.1f} |")
            lines += ["", f"Gap (bf16 - fp32): at most {fmt(result['max_abs_gap'], '.4f')} in absolute value, "
                          f"{fmt(result['final_gap'], '+.4f')} at the last step, "
                          f"{fmt(result['mean_gap_last_steps'], '+.4f')} on average over the last "
                          f"{result['last_steps']} steps."]
        else:
            lines += bench_table(result["rows"], with_ratio=s["key"] == "b")
            r = result["rows"][0]
            lines += ["", f"{r['total_batch_size']} x {r['block_size']} tokens per step ({r['batch_size']} per "
                          f"micro-step), {r['dtype']}{', compiled' if r['compile'] else ''}, {r['parallelism']}; "
                          f"ms/iter: median over rounds; peak memory: torch.cuda.max_memory_allocated during set-up "
                          f"and warm-up; estimate: memory.estimate for the same config."]
    return "\n".join(lines) + "\n"


def checkpoints(iters):
    """The steps whose loss step c's table shows: the first, every tenth, the last."""
    return sorted({0, iters - 1, *range(9, iters, 10)})


def write(out, report):
    (out / "report.json").write_text(json.dumps(finite(report), indent=2) + "\n")
    (out / "report.md").write_text(markdown(report))


# ----------------------------------------------------------------------------- main

def out_of_time(*_):
    raise OutOfTime()


def run_step(step, entry, deadline):
    """Run one step into its report entry, stopped by SIGALRM at the deadline; False when it was."""
    t0 = time.monotonic()
    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, max(deadline - t0, 0.001))
    try:
        entry["result"] = step.run()
        entry["status"] = "ran"
    except OutOfTime:
        entry.update(status="stopped", note="the budget ended during the step")
    except Exception as e:  # the next steps still run: a quarter-hour on a GPU is not lost to one error
        traceback.print_exc()
        entry.update(status="failed", note=f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        entry["seconds"] = time.monotonic() - t0
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return entry["status"] != "stopped"


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    start = time.monotonic()
    deadline = start + args.budget_s
    out = Path(args.out)
    train.check_writable(out, 0)
    mode = SMOKE if args.smoke else GPU
    env, missing = environment(args.smoke, args.commit)
    report = {"started_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "smoke": args.smoke, "budget_s": args.budget_s, "elapsed_s": 0.0, "environment": env,
              "missing": missing, "data": None, "steps": []}
    for line in environment_lines(env):
        print(line)
    for line in missing:
        print(f"missing: {line}", file=sys.stderr)
    if missing:
        write(out, report)
        hint = "" if args.smoke or env["cuda_available"] else "; on a CPU, --smoke runs the same code path"
        raise UserError(f"{len(missing)} missing piece(s) of the environment, listed above{hint}")
    pace = Pace(mode, env["peak_flops"])
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        data, report["data"] = data_dir(scratch, mode.synthetic_tokens, train.TrainConfig.block_size)
        in_time = True
        for step in plan(mode, data, scratch, pace, deadline):
            guess = step.estimate(pace)
            left = deadline - time.monotonic()
            entry = {"key": step.key, "title": step.title, "estimate_s": guess, "seconds": None,
                     "status": "skipped", "note": "", "result": None}
            report["steps"].append(entry)
            if not in_time:
                entry["note"] = "the budget ended"
            elif guess > left:
                entry["note"] = f"needs ~{guess:.0f} s, {max(left, 0):.0f} s left"
            else:
                print(f"\n== {step.key}. {step.title} (estimate {guess:.0f} s, {left:.0f} s left)", flush=True)
                in_time = run_step(step, entry, deadline)
            report["elapsed_s"] = time.monotonic() - start
            write(out, report)
    print("\n" + (out / "report.md").read_text(), end="")


if __name__ == "__main__":
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
