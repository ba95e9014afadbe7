"""scripts/experiments/sweep.py: lr selection and per-seed speedup on known losses, and a real (minuscule)
sweep through train.py: its outputs, resuming, skipping, failures and bad input."""

import contextlib
import io
import json
import math
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from runs import first_crossing, load_run, speedup
from scripts.experiments.sweep import Point, analyze, format_summary, main, select_lr, step_time, write_outputs
from tests.helpers import REPO, make_run, write_run

ADAMW, SOPHIAG = (str(REPO / "config" / f"train_tiny_{o}.py") for o in ("adamw", "sophiag"))
# one thread per run: two threads on a busy 2-core machine are several times slower
LAUNCHER = f"env OMP_NUM_THREADS=1 {shlex.quote(sys.executable)}"
MINUSCULE = [
    "n_layer=1",
    "n_embd=16",
    "n_head=2",
    "block_size=16",
    "batch_size=4",
    "total_batch_size=4",
    "max_iters=6",
    "eval_interval=3",
    "eval_iters=1",
    "log_interval=1",
    "warmup_iters=1",
    "device=cpu",
]


def write_point(root, optimizer, lr, seed, evals, max_iters=200):
    """A synthetic run dir and its Point (only what the analysis reads)."""
    out_dir = write_run(root, f"{optimizer}_lr{lr}_seed{seed}", evals, optimizer, lr, seed, max_iters)
    return Point(optimizer, lr, seed, out_dir, [], json.loads((out_dir / "config.json").read_text()))


# --------------------------------------------------------------------------- selection


def test_select_lr_takes_the_lowest_mean_over_seeds_not_the_single_best_run():
    sel = select_lr({1e-3: [5.0, 5.2], 3e-3: [4.8, 4.9], 1e-2: [4.7, 5.3]})
    assert sel["means"] == pytest.approx({1e-3: 5.1, 3e-3: 4.85, 1e-2: 5.0})
    assert sel["best"] == 3e-3  # 1e-2 has the best single run (4.7) but a worse mean
    assert sel["edge"] is None


def test_select_lr_at_the_edge_of_the_grid_says_widen_it():
    high = select_lr({1e-3: [5.0], 3e-3: [4.9], 1e-2: [4.8]})
    assert high["best"] == 1e-2
    assert high["edge"] == "the highest lr of the grid: widen the grid (e.g. add 3e-2)"
    low = select_lr({1e-3: [4.0], 3e-3: [4.9], 1e-2: [4.8]})
    assert low["edge"] == "the lowest lr of the grid: widen the grid (e.g. add 3.3e-4)"
    assert select_lr({1e-3: [4.0, 4.1]})["edge"] == "the only lr of the grid: sweep at least 3"


def test_select_lr_skips_unfinished_lrs_and_ranks_diverged_ones_last():
    sel = select_lr({1e-3: [5.0, None], 3e-3: [5.1, 5.1], 1e-2: [math.nan, 4.0]})
    assert sel["means"][1e-3] is None and sel["means"][1e-2] == math.inf
    assert sel["best"] == 3e-3  # diverging at 1e-2 brackets it from above, 1e-3 is not known
    assert sel["edge"] == "the lowest or highest lr with finished runs: finish the sweep to know"
    assert select_lr({1e-3: [5.0, 5.0], 3e-3: [4.0, 4.0], 1e-2: [math.nan, 4.0]})["edge"] is None
    assert select_lr({1e-3: [None], 3e-3: [math.inf]})["best"] is None


# --------------------------------------------------------------------------- speedup

BASELINES = {
    0: make_run("adamw", [(0, 10.0), (100, 5.0), (200, 4.0)]),  # target 4.0
    1: make_run("adamw", [(0, 10.0), (100, 6.0), (200, 4.5)]),
}  # target 4.5


def test_speedup_compares_each_seed_with_the_baseline_of_the_same_seed():
    sophia = {
        0: make_run("sophiag", [(0, 10.0), (100, 4.5), (200, 3.5)], tokens_per_iter=110),
        1: make_run("sophiag", [(0, 10.0), (100, 4.5), (200, 4.0)], tokens_per_iter=110),
    }
    result = speedup(BASELINES, sophia)
    seed0, seed1 = result["per_seed"]
    # seed 0: 4.0 is halfway between the evals at 100 (4.5) and 200 (3.5)
    assert (seed0["target"], seed0["to_target"].steps, seed0["baseline_to_target"].steps) == (
        4.0,
        pytest.approx(150.0),
        200.0,
    )
    assert seed0["ratio"].steps == pytest.approx(0.75)
    assert seed0["ratio"].tokens == pytest.approx(0.75 * 1.1)  # Hessian tokens count
    # seed 1 hits its own baseline's 4.5 at 100 steps; seed 0's target (4.0) would give 1.0x
    assert seed1["ratio"].steps == pytest.approx(0.5)
    steps = result["stats"]["steps"]
    assert steps["n"] == 2 and steps["mean"] == pytest.approx(0.625)
    assert (steps["min"], steps["max"]) == (pytest.approx(0.5), pytest.approx(0.75))
    assert steps["std"] == pytest.approx(0.25 / math.sqrt(2))  # sample std of two values
    assert result["not_reached_seeds"] == []


def test_speedup_not_reached_is_reported_as_such_never_as_a_number():
    sophia = {
        0: make_run("sophiag", [(0, 10.0), (100, 4.5), (200, 3.5)]),
        1: make_run("sophiag", [(0, 10.0), (100, 5.0), (200, 4.6)]),
    }  # stops above 4.5
    result = speedup(BASELINES, sophia)
    assert result["per_seed"][1]["reached"] is False
    assert result["per_seed"][1]["ratio"].steps is None
    assert result["not_reached_seeds"] == [1]
    assert result["stats"]["steps"]["n"] == 1 and result["stats"]["steps"]["std"] is None
    nowhere = speedup(BASELINES, {s: make_run("sophiag", [(0, 10.0), (200, 9.0)]) for s in (0, 1)})
    assert nowhere["stats"] == {"steps": None, "tokens": None, "seconds": None}


def test_analyze_synthetic_sweep_selects_reports_and_writes_json_and_png(tmp_path):
    losses = {  # (optimizer, lr) -> final val loss of seed 0, seed 1
        ("adamw", 1e-3): (4.6, 4.7),
        ("adamw", 3e-3): (4.0, 4.5),
        ("adamw", 1e-2): (4.3, 4.4),
        ("sophiag", 1e-3): (4.2, 4.3),
        ("sophiag", 3e-3): (3.5, 4.6),
        ("sophiag", 1e-2): (None, 4.0),
    }
    points = []
    for seed in (0, 1):
        for (optimizer, lr), finals in losses.items():
            final = finals[seed]
            evals = [(0, 10.0), (100, 5.0)] + ([(200, final)] if final is not None else [])
            points.append(write_point(tmp_path, optimizer, lr, seed, evals))
    summary, chosen = analyze(points, [], "adamw", {"sophiag lr=1e-2 seed=0": "exit 2: error: boom"})
    assert summary["selection"]["adamw"]["best_lr"] == 3e-3  # mean 4.25 < 4.35 < 4.65
    assert summary["selection"]["sophiag"]["best_lr"] == 3e-3  # 1e-2 is unfinished for seed 0
    assert summary["selection"]["sophiag"]["lrs"][2]["mean_val_loss"] is None
    per_seed = summary["speedup"]["sophiag"]["per_seed"]
    # seed 0: target 4.0, sophiag goes 5.0 -> 3.5 over 100..200: 4.0 at 166.7 steps
    assert per_seed[0]["ratio"].steps == pytest.approx((100 + 100 * 1.0 / 1.5) / 200)
    assert per_seed[1]["reached"] is False  # target 4.5, sophiag ends at 4.6
    statuses = {(r["optimizer"], r["lr"], r["seed"]): r["status"] for r in summary["runs"]}
    assert statuses[("sophiag", 1e-2, 0)] == "FAILED (exit 2: error: boom)"
    assert statuses[("adamw", 3e-3, 1)] == "finished"
    assert summary["step_time"]["adamw"] == {"n": 6, "median": 0.5, "min": 0.5, "max": 0.5, "ratio": 1.0}
    assert summary["step_time"]["sophiag"]["n"] == 5  # the unfinished run has no final time

    text = format_summary(summary)
    assert "adamw: best lr 3e-3\n" in text
    assert "sophiag: best lr 3e-3, the lowest or highest lr with finished runs" in text
    assert "NOT REACHED for seed 1" in text
    assert "over the 1 of 2 seeds that reached it" in text
    assert "1e-2  incomplete" in text
    assert "sophiag    5     0.500 s  0.500-0.500 s  1.00x" in text

    written = write_outputs(summary, chosen, tmp_path / "sweep")
    report = json.loads((tmp_path / "sweep" / "sweep_summary.json").read_text())
    assert report["selection"]["sophiag"]["best_lr"] == 3e-3
    assert report["speedup"]["sophiag"]["not_reached_seeds"] == [1]
    assert (tmp_path / "sweep" / "sweep_best.png").stat().st_size > 10_000
    assert len(written) == 2


def test_analyze_with_tuning_seeds_selects_on_them_and_measures_every_seed(tmp_path):
    """--tune_seeds 1: seed 0 trains the grid and picks the lr, seeds 1 and 2 only train it."""
    tune = [
        write_point(tmp_path, "adamw", lr, 0, [(0, 10.0), (100, 5.0), (200, final)])
        for lr, final in ((1e-3, 4.6), (3e-3, 4.0), (1e-2, 4.3))
    ]
    tune += [
        write_point(tmp_path, "muon", lr, 0, [(0, 10.0), (100, 4.5), (200, final)])
        for lr, final in ((1e-2, 3.9), (3e-2, 3.6), (1e-1, 3.8))
    ]
    confirm = [
        write_point(tmp_path, "adamw", 3e-3, 1, [(0, 10.0), (100, 5.0), (200, 4.2)]),
        write_point(tmp_path, "muon", 3e-2, 1, [(0, 10.0), (100, 4.0), (200, 3.7)]),
        write_point(tmp_path, "adamw", 3e-3, 2, [(0, 10.0), (100, 5.0), (200, 4.1)]),
        write_point(tmp_path, "muon", 3e-2, 2, [(0, 10.0), (100, 4.2)]),
    ]  # unfinished
    summary, chosen = analyze(tune, confirm, "adamw", {})
    assert summary["tune_seeds"] == [0] and summary["seeds"] == [0, 1, 2]
    adamw = summary["selection"]["adamw"]
    assert adamw["best_lr"] == 3e-3 and adamw["edge"] is None
    assert [e["per_seed"] for e in adamw["lrs"]] == [[4.6], [4.0], [4.3]]  # seed 0 only
    assert sorted(chosen["adamw"]) == [0, 1, 2] and sorted(chosen["muon"]) == [0, 1]
    per_seed = summary["speedup"]["muon"]["per_seed"]
    assert [e["seed"] for e in per_seed] == [0, 1]
    # seed 1: target 4.2 (adamw seed 1); muon goes 10 -> 4.0 over 0..100: 4.2 at 96.7 steps
    assert per_seed[1]["ratio"].steps == pytest.approx(100 * 5.8 / 6.0 / 200)
    text = format_summary(summary)
    assert (
        "mean final val loss over seeds 0\n(seeds 1, 2 train each optimizer's selected lr only, --tune_seeds 1)" in text
    )
    assert "seed 2: no finished run of both yet" in text
    assert "muon / adamw ratio, over 2 seeds" in text
    statuses = {(r["optimizer"], r["seed"]): r["status"] for r in summary["runs"]}
    assert statuses[("muon", 2)] == "incomplete (100/200 iters)"


def test_step_time_is_each_optimizers_median_as_a_ratio_to_the_baseline():
    times = step_time({"adamw": [1.0, 3.0, 2.0], "muon": [3.0, 2.5]}, "adamw")
    assert times["adamw"] == {"n": 3, "median": 2.0, "min": 1.0, "max": 3.0, "ratio": 1.0}
    assert times["muon"]["median"] == 2.75 and times["muon"]["ratio"] == pytest.approx(1.375)
    assert step_time({"muon": [1.0]}, "adamw")["muon"]["ratio"] is None  # no baseline run finished


# --------------------------------------------------------------------------- a real sweep


def sweep_argv(
    out, data_dir, lrs=("adamw=1e-3,1e-2", "sophiag=1e-2"), seeds=("0", "1"), configs=(ADAMW, SOPHIAG), extra_sets=()
):
    return [
        "--configs",
        *configs,
        "--lrs",
        *lrs,
        "--seeds",
        *seeds,
        "--out",
        str(out),
        "--launcher",
        LAUNCHER,
        "--set",
        *MINUSCULE,
        f"data_dir={data_dir}",
        *extra_sets,
    ]


@pytest.fixture(scope="module")
def swept(shakespeare, tmp_path_factory):
    """A real 2 + 1 lrs x 2 seeds sweep of a minuscule GPT: its out dir and console output."""
    out = tmp_path_factory.mktemp("sweep")
    console = io.StringIO()
    with contextlib.redirect_stdout(console):
        code = main(sweep_argv(out, shakespeare))
    return out, code, console.getvalue()


def test_sweep_trains_every_point_and_reports_the_speedup(swept):
    out, code, console = swept
    assert code == 0, console
    names = [
        f"{o}_lr{lr}_seed{s}" for s in (0, 1) for o, lr in (("adamw", "1e-3"), ("adamw", "1e-2"), ("sophiag", "1e-2"))
    ]
    for k, name in enumerate(names, 1):
        config = json.loads((out / name / "config.json").read_text())
        optimizer, lr, seed = name.split("_")
        assert (config["optimizer_name"], config["learning_rate"], config["seed"]) == (
            optimizer,
            float(lr[2:]),
            int(seed[4:]),
        )
        assert "done: 6 iters" in (out / name / "train.log").read_text()
        assert f"[{k}/6] {optimizer} lr={lr[2:]} seed={seed[4:]}: done in" in console
    report = json.loads((out / "sweep_summary.json").read_text())
    assert report["selection"]["adamw"]["best_lr"] == 1e-2  # 1e-3 barely moves in 6 steps
    assert report["selection"]["sophiag"]["edge"] == "the only lr of the grid: sweep at least 3"
    # the reported ratios are compare.py's crossings of the same-seed runs
    per_seed = report["speedup"]["sophiag"]["per_seed"]
    assert [entry["seed"] for entry in per_seed] == [0, 1]
    for entry in per_seed:
        base = load_run(out / f"adamw_lr1e-2_seed{entry['seed']}")
        sophia = load_run(out / f"sophiag_lr1e-2_seed{entry['seed']}")
        assert entry["target"] == base.final_val_loss
        x = first_crossing(sophia.rows, base.final_val_loss)
        assert entry["steps_to_target"] == (None if x is None else pytest.approx(x))
    assert "speedup of sophiag lr=1e-2 over adamw lr=1e-2" in console
    assert (out / "sweep_best.png").stat().st_size > 10_000


def test_rerun_skips_finished_runs(swept, shakespeare, capsys, monkeypatch):
    """Even with --out spelled another way (relative here, absolute when the runs were made)."""
    out, _, _ = swept
    logs = {p: p.read_text() for p in out.glob("*/train.log")}
    monkeypatch.chdir(out.parent)
    assert main(sweep_argv(Path(out.name), shakespeare)) == 0
    console = capsys.readouterr().out
    assert "sweep: 6 runs, 6 finished already, 0 to train" in console
    assert console.count("finished already (final val loss") == 6
    assert {p: p.read_text() for p in out.glob("*/train.log")} == logs  # nothing was trained


def test_unfinished_run_resumes_from_its_checkpoint(swept, shakespeare, capsys):
    """Cut a finished run back to its iter-3 checkpoint, as a kill would leave it: the rerun
    continues from there (init_from=auto) and ends exactly where the uninterrupted run did."""
    out, _, _ = swept
    run_dir = out / "adamw_lr1e-2_seed1"
    final = load_run(run_dir).final_val_loss
    (run_dir / "ckpt_00000006.pt").unlink()
    rows = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "metrics.jsonl").write_text("".join(r for r in rows if json.loads(r)["iter"] <= 3))
    assert main(sweep_argv(out, shakespeare)) == 0
    console = capsys.readouterr().out
    assert "5 finished already, 1 to train" in console
    assert "[5/6] adamw lr=1e-2 seed=1: resuming" in console
    assert "resuming from" in (run_dir / "train.log").read_text()
    assert load_run(run_dir).final_val_loss == final  # train.py resumes bit for bit


def test_tune_seeds_plans_the_other_seeds_at_the_selected_lrs_only(swept, shakespeare, capsys):
    out, _, _ = swept
    assert main([*sweep_argv(out, shakespeare), "--tune_seeds", "1", "--dry_run"]) == 0
    listed = [line.split(":")[0] for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    assert listed == [
        "[1/5] adamw lr=1e-3 seed=0",
        "[2/5] adamw lr=1e-2 seed=0",
        "[3/5] sophiag lr=1e-2 seed=0",
        "[4/5] adamw lr=1e-2 seed=1",
        "[5/5] sophiag lr=1e-2 seed=1",
    ]


def test_tune_seeds_trains_the_grid_once_then_the_selected_lr(shakespeare, tmp_path, capsys):
    argv = sweep_argv(tmp_path, shakespeare, lrs=("adamw=1e-3,1e-2",), configs=(ADAMW,))
    assert main([*argv, "--tune_seeds", "1"]) == 0
    console = capsys.readouterr().out
    assert "seeds 1: the selected lrs" in console
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == [
        "adamw_lr1e-2_seed0",
        "adamw_lr1e-2_seed1",
        "adamw_lr1e-3_seed0",
    ]
    report = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert report["tune_seeds"] == [0] and report["selection"]["adamw"]["best_lr"] == 1e-2


def test_changed_settings_on_an_existing_sweep_is_an_error(swept, shakespeare, capsys):
    out, _, _ = swept
    assert main(sweep_argv(out, shakespeare, extra_sets=["max_iters=8"])) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sweep.py: error: ") and len(err.splitlines()) == 1
    assert "max_iters=6 there, 8 now" in err and "use another --out" in err


def test_failing_run_is_reported_and_the_sweep_goes_on(shakespeare, tmp_path, capsys):
    # the Hessian batch (6 sequences) does not split into micro-batches of 4: only Sophia fails
    argv = sweep_argv(
        tmp_path,
        shakespeare,
        lrs=("adamw=1e-2", "sophiag=1e-2"),
        seeds=("0",),
        configs=(SOPHIAG, ADAMW),
        extra_sets=["hess_total_batch_size=6"],
    )
    assert main(argv) == 1
    console = capsys.readouterr().out
    assert "[1/2] sophiag lr=1e-2 seed=0: FAILED after" in console
    assert "exit 2: error: hess_total_batch_size=6 is not divisible" in console
    assert "[2/2] adamw lr=1e-2 seed=0: done in" in console
    assert "sophiag: no lr has a finished, finite run for every seed" in console
    report = json.loads((tmp_path / "sweep_summary.json").read_text())
    assert report["selection"]["adamw"]["best_lr"] == 1e-2 and report["speedup"] == {}


def test_dry_run_and_analyze_only_train_nothing(shakespeare, tmp_path, capsys):
    argv = sweep_argv(tmp_path / "sweep", shakespeare, lrs=("adamw=1e-3", "sophiag=1e-3"), seeds=("0",))
    assert main([*argv, "--dry_run"]) == 0
    console = capsys.readouterr().out
    assert "[1/2] adamw lr=1e-3 seed=0: would run" in console
    assert "--learning_rate=0.001 --seed=0" in console and "--init_from=auto" in console
    assert not (tmp_path / "sweep").exists()
    assert main([*argv, "--analyze_only"]) == 1  # nothing to select from yet
    console = capsys.readouterr().out
    assert "not started" in console and "no speedup" in console


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--configs", ADAMW, SOPHIAG, "--lrs", "adamw=1e-3", "sophiag=1e-3", "lion=1e-4"],
            "--lrs lion: no --configs file trains 'lion' (they train adamw, sophiag)",
        ),
        (["--configs", ADAMW, "config/nope.py", "--lrs", "adamw=1e-3"], "--configs config/nope.py: file not found"),
        (["--configs", ADAMW, SOPHIAG, "--lrs", "adamw=1e-3"], "no --lrs for 'sophiag'"),
        (["--configs", ADAMW, "--lrs", "adamw:1e-3"], "write OPTIMIZER=LR,LR,..."),
        (["--configs", ADAMW, "--lrs", "adamw=1e-3,fast"], "learning rates must be numbers"),
        (["--configs", ADAMW, "--lrs", "adamw=1e-3", "--set", "seed=3"], "the sweep sets"),
        (["--configs", ADAMW, "--lrs", "adamw=1e-3", "--set", "n_layers=3"], "did you mean 'n_layer'"),
        (["--configs", ADAMW, "--lrs", "adamw=1e-3", "--seeds", "0", "0"], "a seed is repeated"),
        (
            ["--configs", ADAMW, "--lrs", "adamw=1e-3", "--seeds", "0", "1", "--tune_seeds", "3"],
            "--tune_seeds 3: must be 1 to 2",
        ),
        (["--configs", SOPHIAG, "--lrs", "sophiag=1e-3"], "--baseline adamw: no --configs file"),
    ],
)
def test_bad_input_is_one_line_error_and_nonzero_exit(args, message, tmp_path, capsys):
    assert main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("sweep.py: error: ")
    assert message in err
    assert list(tmp_path.iterdir()) == []


def test_runs_as_a_script_with_one_line_errors(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            "scripts/experiments/sweep.py",
            "--configs",
            "config/nope.py",
            "--lrs",
            "adamw=1e-3",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 2
    assert out.stderr.strip() == "sweep.py: error: --configs config/nope.py: file not found"
