"""scripts/bench/gpu_check.py, the one command a GPU gets: its whole code path (--smoke: every step on the
CPU at a tiny size) on prepared GPT-2 bins, the report it writes, and the budget that skips what does not fit."""

import json
import subprocess
import sys
import time

import pytest

from scripts.bench import gpu_check
from tests.helpers import REPO

STEPS = ["a", "b", "c", "d", "e1", "e2", "e3", "e4"]


def run_gpu_check(out, *args):
    return subprocess.run(
        [sys.executable, "-m", "scripts.bench.gpu_check", "--out", str(out), *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_smoke_on_prepared_bins_runs_every_step_and_reports_every_number(shakespeare, tmp_path):
    # data/shakespeare/prepare.py writes what data/openwebtext/prepare.py writes: GPT-2 tokens and meta.json
    out = run_gpu_check(tmp_path, "--smoke", "--budget_s", "3600", "--data", str(shakespeare))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["data"] == f"{shakespeare} (prepared bins)" and report["environment"]["torch"]
    steps = {s["key"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    assert all(s["status"] == "ran" and s["seconds"] > 0 for s in steps.values()), report["steps"]
    a = steps["a"]["result"]
    assert list(a["val_loss"]) == ["0", "2", "4"] and a["checkpoints"] == ["ckpt_00000004.pt", "ckpt_00000002.pt"]
    assert steps["b"]["result"]["files"] == ["tests/test_sophia.py", "tests/test_spikes.py"]
    assert "2 skipped" in steps["b"]["result"]["summary"]  # the CUDA tests, on a CPU
    c = {row["entry"]: row for row in steps["c"]["result"]["rows"]}
    assert list(c) == ["adamw", "sophiag", "sophiag:hess_total_batch_size=1", "lion", "muon"]
    assert c["adamw"]["vs_adamw"] == [1.0] and c["adamw"]["shares"]["hessian"] == 0
    assert c["sophiag"]["cfg"]["total_batch_size"] == 4 and 0 < c["sophiag"]["shares"]["hessian"] < 1
    assert all(row["ms_per_iter"][0] > 0 and row["estimate"] > 0 and row["mfu"] is None for row in c.values())
    d = steps["d"]["result"]
    assert len(d["bfloat16 eager"]) == len(d["float32 eager"]) == 9 and d["max_abs_gap"] < 0.03
    e2, e3 = (steps[k]["result"]["rows"][0]["cfg"] for k in ("e2", "e3"))
    assert (e2["parallelism"], e2["activation_checkpointing"], e3["activation_checkpointing"]) == ("fsdp", False, True)
    md = (tmp_path / "report.md").read_text()
    assert out.stdout.endswith(md) and all(f"\n## {key}. " in md for key in STEPS)
    assert "sophiag:hess_total_batch_size=1" in md and "estimate" in md  # bench_train's table


def test_a_step_the_budget_cannot_hold_is_skipped_with_a_note(tmp_path):
    out = run_gpu_check(tmp_path, "--smoke", "--budget_s", "0.01", "--data", str(tmp_path / "none"))
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["data"].startswith("synthetic: 100,000 Zipf-distributed GPT-2 tokens")
    assert [s["status"] for s in report["steps"]] == ["skipped"] * len(STEPS)
    assert all(s["note"].startswith("(needs ~") and s["note"].endswith("s left)") for s in report["steps"])


def test_without_cuda_the_check_lists_what_is_missing_and_stops(tmp_path):
    out = run_gpu_check(tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.startswith("error: missing: CUDA: torch.cuda.is_available() is False")
    assert out.stderr.strip().endswith("on a CPU, --smoke runs the same code path")
    assert json.loads((tmp_path / "report.json").read_text())["missing"]


def test_a_process_still_running_at_the_deadline_is_killed():
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        gpu_check.launch(["-c", "import time; time.sleep(30)"], time.monotonic() + 0.5)
    assert time.monotonic() - t0 < 10
