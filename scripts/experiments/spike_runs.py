"""The spike guard on full runs (docs/reliability.md, "Loss spikes"): per config a clean run (false positives: its
skips, the largest z each window saw) and each tests/train_harness.py injection, guard on and off; markdown tables.

    python scripts/experiments/spike_runs.py config/train_shakespeare_char_{sophiag,adamw}.py
    python scripts/experiments/spike_runs.py config/train_tiny_sophiag.py --injections clean --out out/spikes_tiny

A rerun only adds the runs not at max_iters yet; extra --key=value arguments (train.py settings) go to every run.
"""

import argparse
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import train
from errors import run_cli
from metrics import read_metrics
from provenance import REPO


def injections(at, scale, length):
    """name -> (harness options, guard on); 'clean' has none."""
    spike = ["--spike_at_iter", str(at), "--spike_scale", str(scale)]
    poison = ["--poison_at_iter", ",".join(str(at + i) for i in range(length))]
    chosen = {"clean": ([], True), "spike": (spike, True), "spike, guard off": (spike, False)}
    return chosen | {"poison": (poison, True), "poison, guard off": (poison, False)}


def run(config, name, options, guard, root, overrides):
    """One run, unless it has finished already; its metrics rows and verdicts."""
    out = Path(root) / Path(config).stem / name.replace(", ", "_").replace(" ", "_")
    out.mkdir(parents=True, exist_ok=True)
    metrics, verdicts = out / "metrics.jsonl", out / "verdicts.jsonl"
    max_iters = train.parse_args([config, *overrides]).max_iters
    rows = read_metrics(metrics) if metrics.exists() else []
    if not any(r["iter"] == max_iters and "val/loss" in r for r in rows):  # its final eval is not logged yet
        verdicts.unlink(missing_ok=True)
        cmd = [sys.executable, str(REPO / "tests" / "train_harness.py"), *options, "--verdicts", str(verdicts)]
        cmd += ["--", config, f"--out_dir={out}", "--init_from=auto", *overrides, *([] if guard else ["--spike_z=0"])]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(out / "train.log", "w") as log:
            done = subprocess.run(cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{config} {name} failed ({done.returncode}): see {out / 'train.log'}")
        rows = read_metrics(metrics)
    seen = [json.loads(line) for line in verdicts.read_text().splitlines()] if verdicts.exists() else []
    return rows, seen


def margins(verdicts, warmup):
    """Per window and signal: the largest z once judging (from the warmup-th value on), and before."""
    out = {}
    for window in ("step", "hessian"):
        seen = [v for v in verdicts if v["window"] == window]
        for i, signal in enumerate(("loss", "grad_norm") if window == "step" else ("estimator_norm",)):
            z = [(v["z"][i], k) for k, v in enumerate(seen) if not math.isnan(v["z"][i])]
            judged, early = [p for p in z if p[1] >= warmup], [p for p in z if p[1] < warmup]
            if z:
                out[signal] = (max(judged, default=None), max(early, default=None))
    return out


def summary(rows, at):
    trains, evals = [r for r in rows if "train/loss" in r], [r for r in rows if "val/loss" in r]
    after = next((r for r in evals if r["iter"] > at), evals[-1])
    counts = {k: trains[-1].get(f"spike/{k}", 0) for k in ("skipped_steps", "skipped_hessian", "rollbacks")}
    return counts | {"after": (after["iter"], after["val/loss"]), "final": evals[-1]["val/loss"]}


def main(argv):
    formatter = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(description=__doc__, formatter_class=formatter, allow_abbrev=False)
    p.add_argument("configs", nargs="+")
    p.add_argument("--out", default="out/spikes")
    p.add_argument("--at", type=int, default=500, help="the (data) iteration injected at")
    p.add_argument("--scale", type=float, default=100.0, help="the spike's loss multiplier")
    p.add_argument("--poison_length", type=int, default=1, help="consecutive garbage batches from --at on")
    p.add_argument("--injections", default=None, help="comma-separated names (default: all)")
    p.add_argument("--jobs", type=int, default=2, help="runs at a time, each train.py under the harness on one thread")
    args, overrides = p.parse_known_args(argv)
    chosen = injections(args.at, args.scale, args.poison_length)
    if args.injections:
        chosen = {k: chosen[k] for k in args.injections.split(",")}
    cells = [(c, name, opts, guard) for c in args.configs for name, (opts, guard) in chosen.items()]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = dict(zip([(c, n) for c, n, _, _ in cells], pool.map(lambda c: run(*c, args.out, overrides), cells)))
    head = "| config | run | outlier steps skipped | Hessian refreshes skipped | rollbacks | "
    print(head + "val loss at the eval after the injection | final val loss | vs clean |\n" + "|---" * 8 + "|")
    for (config, name), (rows, _) in results.items():
        s = summary(rows, args.at)
        clean = results.get((config, "clean"))
        delta = f"{s['final'] - summary(clean[0], args.at)['final']:+.4f}" if clean else ""
        counts = f"{s['skipped_steps']} | {s['skipped_hessian']} | {s['rollbacks']}"
        after = f"{s['after'][1]:.4f} (iter {s['after'][0]}) | {s['final']:.4f} | {delta}"
        print(f"| {Path(config).stem} | {name} | {counts} | {after} |")
    head = "\n| config | signal | largest z once judged (its value index) | largest z in the warm-up |"
    print(head + "\n|---|---|---|---|")
    for (config, name), (_, verdicts) in results.items():
        if name != "clean":
            continue
        warmup = train.parse_args([config, *overrides]).spike_warmup
        for signal, (judged, early) in margins(verdicts, warmup).items():
            fmt = lambda p: f"{p[0]:.2f} ({p[1]})" if p else "-"  # noqa: E731
            print(f"| {Path(config).stem} | {signal} | {fmt(judged)} | {fmt(early)} |")


if __name__ == "__main__":
    sys.exit(run_cli(main, sys.argv[1:], prog="spike_runs.py"))
