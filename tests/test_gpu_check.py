"""scripts/gpu_check.py, the one command a GPU gets: its whole code path (--smoke: every step on the
CPU at a tiny size), the report it writes, and the budget that skips what does not fit."""
import json
import math
import subprocess
import sys
import time

from scripts import gpu_check
from tests.helpers import REPO

STEPS = ["a", "b", "c", "d1", "e1", "e2", "d2"]


def run_gpu_check(out, *args):
    return subprocess.run([sys.executable, "scripts/gpu_check.py", "--out", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=900)


def test_smoke_runs_every_step_and_reports_every_number(tmp_path):
    out = run_gpu_check(tmp_path, "--smoke", "--budget_s", "3600")  # every step, even on a loaded machine
    assert out.returncode == 0, out.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.json", "report.md"]
    report = json.loads((tmp_path / "report.json").read_text())
    steps = {s["key"]: s for s in report["steps"]}
    assert list(steps) == STEPS
    assert all(s["status"] == "ran" and s["seconds"] > 0 for s in steps.values()), report["steps"]
    assert report["environment"]["torch"] and report["environment"]["commit"]
    assert steps["a"]["result"]["files"] == ["tests/test_sophia.py"]
    assert "1 skipped" in steps["a"]["result"]["summary"]  # the CUDA test, on a CPU
    b = {row["entry"]: row for row in steps["b"]["result"]["rows"]}
    assert list(b) == ["adamw", "sophiag", "sophiag:hess_total_batch_size=1", "lion", "muon"]
    assert b["adamw"]["vs_adamw"] == 1.0 and b["adamw"]["shares"]["hessian"] == 0
    assert b["sophiag"]["hess_total_batch_size"] == 4 and 0 < b["sophiag"]["shares"]["hessian"] < 1
    for row in b.values():
        assert row["ms_per_iter"] > 0 and row["tokens_per_s"] > 0 and row["estimate_gib"] > 0
        assert row["mfu"] is None and row["peak_memory_gib"] is None  # no peak FLOP/s or CUDA memory on a CPU
        assert math.isclose(sum(row["shares"].values()), 1.0)
    gap = steps["c"]["result"]
    assert list(gap["runs"]) == ["bfloat16 eager", "float32 eager"]  # --smoke does not compile
    assert all(len(run["losses"]) == gap["iters"] for run in gap["runs"].values())
    assert gap["max_abs_gap"] < 0.03
    e1, e2 = (steps[k]["result"]["rows"][0] for k in ("e1", "e2"))
    assert (e1["parallelism"], e1["activation_checkpointing"]) == ("fsdp", False)
    assert (e2["parallelism"], e2["activation_checkpointing"]) == ("fsdp", True)
    md = (tmp_path / "report.md").read_text()
    assert out.stdout.endswith(md)
    for step in STEPS:
        assert f"\n## {step}. " in md
    assert "| entry | params | ms/iter | tok/s | MFU | data | fwd+bwd | optim | hessian | other | vs AdamW |" in md


def test_a_step_the_budget_cannot_hold_is_skipped_with_a_note(tmp_path):
    out = run_gpu_check(tmp_path, "--smoke", "--budget_s", "0.01")
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    assert [s["status"] for s in report["steps"]] == ["skipped"] * len(STEPS)
    assert all(s["note"].startswith("needs ~") and s["note"].endswith("s left") for s in report["steps"])


def test_without_cuda_the_check_lists_what_is_missing_and_stops(tmp_path):
    out = run_gpu_check(tmp_path)
    assert out.returncode == 2
    assert "missing: CUDA: torch.cuda.is_available() is False" in out.stderr
    assert out.stderr.splitlines()[-1].startswith("error: ") and "--smoke" in out.stderr.splitlines()[-1]
    assert json.loads((tmp_path / "report.json").read_text())["missing"]


def test_a_step_still_running_at_the_deadline_is_stopped():
    entry = {"status": "skipped", "note": "", "result": None, "seconds": None}
    step = gpu_check.Step("x", "sleeps past the deadline", lambda pace: 0.0, lambda: time.sleep(10))
    assert gpu_check.run_step(step, entry, time.monotonic() + 0.2) is False
    assert entry["status"] == "stopped" and entry["result"] is None and 0.2 <= entry["seconds"] < 5
