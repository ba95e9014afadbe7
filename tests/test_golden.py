"""Golden losses: the first 10 train losses and the first val loss of config/train_tiny_sophiag.py,
made cheap (a smaller batch, fp32, one thread, its fixed seed), against the numbers checked in at
tests/assets/golden_losses.json. Every other test compares a run with another run; this one pins
absolute numbers, so that a change that moves the losses is seen and is meant.

    python -m tests.test_golden      # regenerate the file, when a change is meant to move them
"""

import json
import subprocess
import sys
import tempfile

import pytest
import torch

import train
from tests.helpers import REPO, metrics_rows

GOLDEN = REPO / "tests" / "assets" / "golden_losses.json"
TOLERANCE = 1e-4
CHEAP = [
    "--max_iters=10",
    "--batch_size=4",
    "--total_batch_size=8",
    "--hess_total_batch_size=4",
    "--hess_interval=5",
    "--eval_iters=1",
    "--log_interval=1",
    "--device=cpu",
    "--dtype=float32",
    "--compile=False",
    "--wandb_log=False",
]


def losses(data_dir, out_dir):
    """{"train": the train losses of iterations 1-10, "val": the val loss at iteration 0}."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train.main(
            [str(REPO / "config" / "train_tiny_sophiag.py"), f"--data_dir={data_dir}", f"--out_dir={out_dir}", *CHEAP]
        )
    finally:
        torch.set_num_threads(threads)
    rows = metrics_rows(out_dir)
    return {
        "train": [r["train/loss"] for r in rows if "train/loss" in r],
        "val": next(r["val/loss"] for r in rows if "val/loss" in r),
    }


def test_losses_match_the_golden_file(shakespeare, tmp_path):
    golden = json.loads(GOLDEN.read_text())
    fresh = losses(shakespeare, tmp_path)
    fix = (
        f"if the change is meant to move them, regenerate {GOLDEN.relative_to(REPO)} with "
        f"`python -m tests.test_golden` and commit it with the change"
    )
    assert len(fresh["train"]) == len(golden["train"]) == 10
    for it, (a, b) in enumerate(zip(fresh["train"], golden["train"]), 1):
        assert a == pytest.approx(b, abs=TOLERANCE), f"train loss at iter {it}: {a} != golden {b}; {fix}"
    assert fresh["val"] == pytest.approx(golden["val"], abs=TOLERANCE), (
        f"val loss at iter 0: {fresh['val']} != golden {golden['val']}; {fix}"
    )


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, str(REPO / "data" / "shakespeare" / "prepare.py"), "--out_dir", f"{tmp}/data"],
            check=True,
            capture_output=True,
        )
        result = {"config": "config/train_tiny_sophiag.py " + " ".join(CHEAP), **losses(f"{tmp}/data", f"{tmp}/out")}
    GOLDEN.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {GOLDEN}")
