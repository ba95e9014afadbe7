"""One prepared command for a GPU, run from the repository root as `python -m scripts.bench.gpu_check --out DIR`.

Checks the environment (exit 2 when a piece is missing), then runs each step in its own processes on --data or
synthetic tokens (train.py with a checkpoint and a resume, the CUDA-only tests, bench_train at every size, bf16 vs
fp32); a step runs if the time left holds its estimate (measured: seconds per parameter per model built, median).
--smoke runs the same path on the CPU, tiny (docs/performance.md)."""

import argparse
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch

import train
from checkpoint import checkpoint_paths
from data.common import read_meta
from errors import UserError, run_cli
from memory import parameter_counts
from metrics import read_metrics
from model import PADDED_VOCAB_SIZE
from provenance import REPO, provenance
from runs import jsonable
from vocab import GPT2_VOCAB_SIZE

GPU = "--device=cuda --dtype=bfloat16 --compile=True".split()
SMOKE = "--device=cpu --n_layer=2 --n_head=2 --n_embd=16 --block_size=16 --batch_size=2 --hess_interval=2".split()


def launch(args: list[str], deadline: float) -> str:
    """`python ARGS` in the repository root, its process group killed at the deadline; its output."""
    cmd, pipe = [sys.executable, *args], subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=pipe, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        out = proc.communicate(timeout=max(deadline - time.monotonic(), 0.001))[0]
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    print(out, end="", flush=True)
    if proc.returncode:
        last = (out.strip().splitlines() or [""])[-1][:300]
        raise RuntimeError(f"{args[1] if args[0] == '-m' else args[0]} exited with {proc.returncode}: {last}")
    return out


def data_dir(prepared: Path, scratch: Path, n_tokens: int) -> tuple[Path, str]:
    """The prepared bins if valid, else synthetic Zipf-distributed GPT-2 tokens, half a function of the one before."""
    try:
        for split in ("train", "val"):
            train.open_split(prepared, split, train.TrainConfig.block_size, read_meta(prepared))
        return prepared, f"{prepared} (prepared bins)"
    except UserError as e:
        print(f"{e}: synthetic tokens instead")
    rng, p = np.random.default_rng(0), 1.0 / np.arange(1, GPT2_VOCAB_SIZE + 1)
    for split, n in (("train", n_tokens), ("val", n_tokens // 10)):
        tokens = rng.choice(GPT2_VOCAB_SIZE, size=n, p=p / p.sum())
        follows = np.flatnonzero(rng.random(n - 1) < 0.5) + 1
        tokens[follows] = (tokens[follows - 1] * 7 + 3) % GPT2_VOCAB_SIZE
        tokens.astype(np.uint16).tofile(scratch / f"{split}.bin")
    return scratch, f"synthetic: {n_tokens:,} Zipf-distributed GPT-2 tokens"


def steps(smoke: bool, data: Path, scratch: Path) -> list[tuple]:
    """(key, title, parameters x models built, run(deadline) -> result) of every step, in order of value."""
    base = [f"--data_dir={data}", "--wandb_log=False", *(SMOKE if smoke else GPU)]

    def config(size: str, *extra: str, accum: int = 2 if smoke else 4) -> tuple[list[str], int]:
        args = [f"config/train_gpt2_{size}_sophiag.py", *base, *extra]
        cfg = train.parse_args(args)
        return [*args, f"--total_batch_size={cfg.batch_size * accum}"], parameter_counts(cfg, PADDED_VOCAB_SIZE)[0]

    def first_minute(deadline: float) -> dict:
        out, eager = scratch / "a", [] if smoke else ["--compile=False", "--batch_size=4"]
        steps = "--max_iters=2 --eval_interval=2 --eval_iters=2 --warmup_iters=2 --hess_interval=2".split()
        args = config("small", *eager, f"--out_dir={out}", *steps, accum=2)[0]
        launch(["-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "train.py", *args], deadline)
        launch(["train.py", *args, "--max_iters=4", "--init_from=resume"], deadline)
        evals = {r["iter"]: round(r["val/loss"], 4) for r in read_metrics(out / "metrics.jsonl") if "val/loss" in r}
        if list(evals) != [0, 2, 4]:
            raise RuntimeError(f"evals at iterations {list(evals)}, not 0, 2 (checkpoint) and 4 (after the resume)")
        return {"val_loss": evals, "checkpoints": [p.name for p in checkpoint_paths(out)]}

    def cuda_tests(deadline: float) -> dict:
        files = sorted(f"tests/{p.name}" for p in (REPO / "tests").glob("test_*.py") if "mark.cuda" in p.read_text())
        out = launch(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "cuda", *files], deadline)
        return {"files": files, "summary": out.strip().splitlines()[-1]}

    def bench(key: str, args: list[str], optimizers: list[str], deadline: float) -> dict:
        iters = ["--steps", "2", "--rounds", "1", "--warmup", "0"] if smoke else ["--steps", "10", "--rounds", "2"]
        cmd = ["-m", "scripts.bench.bench_train", *args, "--optimizers", ",".join(optimizers), *iters]
        out = launch([*cmd, "--json", f"{scratch}/{key}.json"], deadline)
        return {"table": out.rsplit("\n\n", 1)[-1], "rows": json.loads((scratch / f"{key}.json").read_text())}

    def loss_gap(deadline: float) -> dict:
        steps = f"--max_iters={9 if smoke else 30} --warmup_iters=3 --log_interval=1 --eval_iters=1".split()
        args, losses = config("small", *steps, accum=1)[0], {}
        runs = {f"bfloat16 {'eager' if smoke else 'compiled'}": ["--dtype=bfloat16"]}
        runs["float32 eager"] = ["--dtype=float32", "--compile=False"]
        for name, extra in runs.items():
            launch(["train.py", *args, *extra, f"--out_dir={scratch}/{name}"], deadline)
            rows = read_metrics(scratch / name / "metrics.jsonl")
            losses[name] = [round(r["train/loss"], 4) for r in rows if "train/loss" in r]
        gaps = [round(a - b, 4) for a, b in zip(*losses.values())]
        return {**losses, "gaps (bf16 - fp32)": gaps, "max_abs_gap": max(map(abs, gaps))}

    small, n = config("small")
    quarter = f"sophiag:hess_total_batch_size={train.parse_args(small).total_batch_size // 4}"
    sizes = [("e1", "355M", config("medium")), ("e2", "1.5B, FSDP on one GPU", config("xl", accum=1))]
    xl_ac = config("xl", "--activation_checkpointing=True", accum=1)
    sizes += [("e3", "1.5B, FSDP, activation checkpointing", xl_ac), ("e4", "770M", config("large"))]
    every = partial(bench, "c", small, ["adamw", "sophiag", quarter, "lion", "muon"])
    return [
        ("a", "train.py at 124M: one-rank process group, evals, a checkpoint, a resume", 2 * n, first_minute),
        ("b", "the suite's CUDA-only tests", None, cuda_tests),
        ("c", "124M, every optimizer: throughput, time shares, memory", 5 * n, every),
        ("d", "124M: bf16 against fp32 eager on the same batches", 2 * n, loss_gap),
        *((key, f"{title}, Sophia-G", n, partial(bench, key, args, ["sophiag"])) for key, title, (args, n) in sizes),
    ]


def markdown(report: dict) -> str:
    env, took = report["environment"], f"{report['elapsed_s']:.0f} of {report['budget_s']:.0f} s"
    lines = [f"# GPU check: {env['device']}, torch {env['torch']}, CUDA {env['cuda']}, commit {env['git_commit']}", ""]
    lines.append(f"{report['started_utc']}; data: {report['data']}; {took}")
    lines += [f"\nmissing: {m}" for m in report["missing"]]
    for s in report["steps"]:
        result, took = s.get("result", {}), f" in {s['seconds']:.0f} s" if "seconds" in s else ""
        lines += ["", f"## {s['key']}. {s['title']}: {s['status']}{took} {s['note']}".rstrip(), ""]
        lines += [f"- {key}: {value}" for key, value in result.items() if key not in ("rows", "table")]
        lines += ["```", result["table"].strip("\n"), "```"] if "table" in result else []
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for report.json and report.md")
    parser.add_argument("--budget_s", type=float, default=480, help="seconds for all the steps; then a step is stopped")
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU at a tiny size, no compile")
    parser.add_argument("--data", type=Path, default=REPO / "data" / "openwebtext", help="prepared GPT-2 bins")
    parser.add_argument("--commit", default="", help="the commit, where .git did not travel with the tree")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    train.check_writable(args.out, 0)
    cuda = torch.cuda.is_available()
    env = provenance(torch.device("cuda" if cuda else "cpu")) | ({"git_commit": args.commit} if args.commit else {})
    gpu = not args.smoke
    checks = [(torch.__version__ < "2.11", f"torch >= 2.11: this is {torch.__version__}")]
    checks.append((gpu and not cuda, f"CUDA: torch.cuda.is_available() is False (torch for CUDA {env['cuda']})"))
    checks.append((gpu and cuda and not env["bf16"], f"bf16: {env['device']} does not support it"))
    checks.append((gpu and importlib.util.find_spec("triton") is None, "triton: torch.compile needs it on CUDA"))
    missing = [message for failed, message in checks if failed]
    report = dict(started_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), smoke=args.smoke, data=None)
    report |= dict(budget_s=args.budget_s, elapsed_s=0.0, environment=env, missing=missing, steps=[])

    def write() -> None:
        report["elapsed_s"] = args.budget_s - (deadline - time.monotonic())
        (args.out / "report.json").write_text(json.dumps(jsonable(report), indent=1) + "\n")
        (args.out / "report.md").write_text(markdown(report))

    if missing:
        write()
        hint = "" if args.smoke else "; on a CPU, --smoke runs the same code path"
        raise UserError("missing: " + "; ".join(missing) + hint)
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as scratch:
        data, report["data"] = data_dir(args.data, Path(scratch), 100_000 if args.smoke else 4_000_000)
        pace = []  # seconds per parameter per model built, of each step that ran
        for key, title, weight, step in steps(args.smoke, data, Path(scratch)):
            guess = sorted(pace)[len(pace) // 2] * weight if pace and weight else None
            left = deadline - time.monotonic()
            report["steps"].append(entry := dict(key=key, title=title, estimate_s=guess, status="skipped", note=""))
            if left <= 0 or guess is not None and guess > left:
                entry["note"] = f"(needs ~{guess or 0:.0f} s, {max(left, 0):.0f} s left)"
            else:
                print(f"\n== {key}. {title} ({left:.0f} s left)", flush=True)
                t0 = time.monotonic()
                try:
                    entry.update(result=step(deadline), status="ran")
                except subprocess.TimeoutExpired:
                    entry.update(status="stopped", note="(the budget ended during the step)")
                except Exception as e:  # the next steps still run: a quarter-hour on a GPU is not lost to one error
                    entry.update(status="failed", note=f"({type(e).__name__}: {e})")
                entry["seconds"] = time.monotonic() - t0
                if entry["status"] == "ran" and weight:
                    pace.append(entry["seconds"] / weight)
            write()
    print("\n" + (args.out / "report.md").read_text(), end="")


if __name__ == "__main__":
    sys.exit(run_cli(main))
