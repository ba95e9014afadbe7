"""Shared helpers for the training tests: a tiny model config and ways to run train.py."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from metrics import read_metrics
from provenance import REPO


def tiny_args(data_dir, out_dir, **overrides):
    """train.py arguments for a model small enough to take a step in milliseconds on a CPU."""
    cfg = dict(
        data_dir=str(data_dir),
        out_dir=str(out_dir),
        device="cpu",
        compile=False,
        n_layer=2,
        n_head=2,
        n_embd=32,
        block_size=32,
        batch_size=4,
        total_batch_size=8,
        max_iters=10,
        eval_interval=5,
        eval_iters=2,
        log_interval=1,
        warmup_iters=2,
        learning_rate=3e-3,
        optimizer_name="sophiag",
        hess_interval=2,
        dropout=0.0,
        seed=1,
    )
    cfg.update(overrides)
    return [f"--{k}={v}" for k, v in cfg.items()]


def run_train(args, nproc=1, check=True, timeout=300, env=None, extra_torchrun=(), script=REPO / "train.py"):
    """train.py (or another script) in a subprocess: plain python, or torchrun with nproc CPU ranks (gloo)."""
    if nproc == 1 and not extra_torchrun:
        cmd = [sys.executable, str(script), *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={nproc}",
            *extra_torchrun,
            str(script),
            *args,
        ]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(k, None)
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and out.returncode != 0:
        raise AssertionError(
            f"{Path(script).name} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        )
    return out


def train_in_one_launch(runs, out, nproc=2, faults=()):
    """train.py runs (argument lists) one after another in one torchrun launch (tests/runs_harness.py),
    which saves each run's start-up, with tests/train_harness.py's `faults` injected; returns per rank
    the number of graphs torch.compile had made after each run."""
    (out / "runs.json").write_text(json.dumps(runs))
    run_train(
        [str(out / "runs.json"), str(out / "graphs"), *faults],
        nproc=nproc,
        script=REPO / "tests" / "runs_harness.py",
        timeout=600,
    )
    return [json.loads((out / f"graphs{rank}.json").read_text()) for rank in range(nproc)]


def run_harness(faults, args, nproc=1, torchrun=(), env=None):
    """train.py under tests/train_harness.py (fault injection), plain or under torchrun, one thread per
    process: the same float reductions everywhere, and no slowdown from more threads than free cores."""
    cmd = [str(REPO / "tests" / "train_harness.py"), *faults, "--", *args]
    if nproc > 1:
        cmd = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *torchrun, *cmd]
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(k, None)
    proc = subprocess.Popen(
        [sys.executable, *cmd],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun's workers too, not only torchrun
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def metrics_rows(out_dir):
    return read_metrics(Path(out_dir) / "metrics.jsonl")


# ----------------------------------------------------------------------------- runs that must match

# metrics keys that measure the machine, not the run: every other key must match between two runs
# that train the same thing (interrupted and resumed, on another number of ranks, ...)
NONDETERMINISTIC = {"time_s", "ms_per_iter", "tokens_per_s", "mfu"}


def deterministic(rows):
    """metrics rows without their timings: what two runs of the same training must agree on."""
    return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in rows]


def straight_and_resumed(data_dir, tmp_path, **common):
    """One in-process run of common's max_iters straight, and one stopped halfway and resumed: their
    metrics rows and their last checkpoints, (straight rows, resumed rows, straight ckpt, resumed ckpt)."""
    import checkpoint
    import train

    train.main(tiny_args(data_dir, tmp_path / "straight", **common))
    train.main(tiny_args(data_dir, tmp_path / "split", **{**common, "max_iters": common["max_iters"] // 2}))
    train.main(tiny_args(data_dir, tmp_path / "split", **common, init_from="resume"))
    return (
        *(metrics_rows(tmp_path / d) for d in ("straight", "split")),
        *(checkpoint.read_checkpoint(checkpoint.checkpoint_paths(tmp_path / d)[0]) for d in ("straight", "split")),
    )


def same(a, b):
    """Exact equality of nested checkpoint contents (tensors bit for bit, dtype included)."""
    import torch

    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


# ----------------------------------------------------------------------------- runs for sweep and compare


def eval_rows(evals, tokens_per_iter=100, seconds_per_iter=0.5):
    """metrics rows for (iter, val loss) pairs, each eval preceded by a train row."""
    rows = []
    for it, loss in evals:
        x = {"iter": it, "tokens_seen": it * tokens_per_iter, "time_s": it * seconds_per_iter}
        if it > 0:
            rows.append({**x, "train/loss": loss + 0.1, "lr": 6e-4})
        rows.append({**x, "val/loss": loss, "eval/train_loss": loss - 0.05})
    return rows


def make_run(label, evals, optimizer="adamw", **rate):
    """An in-memory RunRecord whose evals are (iter, val loss) pairs."""
    from runs import RunRecord

    return RunRecord(label, label, {"optimizer_name": optimizer, "max_iters": evals[-1][0]}, eval_rows(evals, **rate))


def write_run(root, name, evals, optimizer="adamw", lr=6e-4, seed=0, max_iters=None, win_rate=False, **rate):
    """A run directory as train.py leaves it (config.json, metrics.jsonl) with these evals."""
    run_dir = Path(root) / name
    run_dir.mkdir(parents=True)
    config = {
        "optimizer_name": optimizer,
        "learning_rate": lr,
        "seed": seed,
        "max_iters": max_iters if max_iters is not None else evals[-1][0],
    }
    (run_dir / "config.json").write_text(json.dumps(config))
    rows = eval_rows(evals, **rate)
    if win_rate:
        for row in rows:
            if "train/loss" in row:
                row["train/win_rate"] = 0.3
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir
