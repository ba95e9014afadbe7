"""Shared helpers for the training tests: a tiny model config and ways to run train.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def tiny_args(data_dir, out_dir, **overrides):
    """train.py arguments for a model small enough to take a step in milliseconds on a CPU."""
    cfg = dict(data_dir=str(data_dir), out_dir=str(out_dir), device="cpu", compile=False,
               n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=4, total_batch_size=8,
               max_iters=10, eval_interval=5, eval_iters=2, log_interval=1, warmup_iters=2,
               learning_rate=3e-3, optimizer_name="sophiag", hess_interval=2, dropout=0.0, seed=1)
    cfg.update(overrides)
    return [f"--{k}={v}" for k, v in cfg.items()]


def run_train(args, nproc=1, check=True, timeout=300, env=None, extra_torchrun=(), script=REPO / "train.py"):
    """train.py (or another script) in a subprocess: plain python, or torchrun with nproc CPU ranks (gloo)."""
    if nproc == 1 and not extra_torchrun:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
               *extra_torchrun, str(script), *args]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(k, None)
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and out.returncode != 0:
        raise AssertionError(f"{Path(script).name} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out


def train_in_one_launch(runs, out, nproc=2):
    """train.py runs (argument lists) one after another in one torchrun launch (tests/runs_harness.py),
    which saves each run's start-up; returns per rank the number of graphs torch.compile had made
    after each run."""
    (out / "runs.json").write_text(json.dumps(runs))
    run_train([str(out / "runs.json"), str(out / "graphs")], nproc=nproc, script=REPO / "tests" / "runs_harness.py",
              timeout=600)
    return [json.loads((out / f"graphs{rank}.json").read_text()) for rank in range(nproc)]


def metrics_rows(out_dir):
    return [json.loads(line) for line in (Path(out_dir) / "metrics.jsonl").read_text().splitlines()]
