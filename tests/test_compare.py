"""scripts/experiments/compare.py: crossing points, ratios, baseline choice, loading, figure and CLI."""

import json
import math
import subprocess
import sys
import types

import pytest

from metrics import read_metrics
from runs import Reach, RunRecord, auto_smooth, clean_rows, ema, first_crossing, load_run, plot_runs, summarize
from scripts.experiments.compare import format_table, load_wandb_runs, main, pick_baseline, rows_from_wandb_history
from tests.helpers import REPO, eval_rows, make_run, write_run

# --------------------------------------------------------------------------- first_crossing


def test_first_crossing_interpolates_linearly_between_consecutive_evals():
    rows = eval_rows([(0, 10.0), (100, 5.0), (200, 3.0)], tokens_per_iter=100, seconds_per_iter=0.5)
    # target 4 lies halfway between the evals at 100 (5.0) and 200 (3.0)
    assert first_crossing(rows, 4.0, "iter") == pytest.approx(150.0)
    assert first_crossing(rows, 4.0, "tokens_seen") == pytest.approx(15_000.0)
    assert first_crossing(rows, 4.0, "time_s") == pytest.approx(75.0)


def test_first_crossing_eval_exactly_at_target_counts_as_reached_there():
    rows = eval_rows([(0, 10.0), (100, 5.0), (200, 3.0)])
    assert first_crossing(rows, 5.0) == 100.0
    assert first_crossing(rows, 3.0) == 200.0
    assert first_crossing(rows, 10.0) == 0.0  # already at the target at the first eval


def test_first_crossing_never_reached_is_none():
    assert first_crossing(eval_rows([(0, 10.0), (100, 5.0), (200, 3.0)]), 2.99) is None
    assert first_crossing([], 3.0) is None


def test_first_crossing_ignores_train_loss_below_target():
    rows = eval_rows([(0, 10.0), (100, 5.0)])
    rows.insert(1, {"iter": 50, "tokens_seen": 5000, "time_s": 25.0, "train/loss": 1.0})
    assert first_crossing(rows, 4.0) is None


def test_first_crossing_with_nan_evals():
    # NaN just before the crossing: nothing to interpolate from, the crossing eval's x is used
    assert first_crossing(eval_rows([(0, 10.0), (100, math.nan), (200, 3.0)]), 4.0) == 200.0
    # NaN after the crossing does not undo it
    nan_later = eval_rows([(0, 10.0), (100, 3.0), (200, math.nan)])
    assert first_crossing(nan_later, 4.0) == pytest.approx(100 * 6 / 7)
    assert first_crossing(eval_rows([(0, math.nan), (100, math.nan)]), 4.0) is None


# --------------------------------------------------------------------------- summarize


def test_summarize_ratios_on_known_crossings_with_different_eval_intervals():
    # baseline evals every 100 steps, reaches its final 3.2 exactly at its last eval (400)
    adamw = make_run("adamw", [(0, 10.0), (100, 6.0), (200, 4.0), (300, 3.5), (400, 3.2)])
    # sophia evals every 50 steps, costs 10% more tokens (Hessian) and 20% more time per step;
    # it crosses 3.2 two thirds of the way from 100 (3.6) to 150 (3.0)
    sophia = make_run(
        "sophia",
        [(0, 10.0), (50, 5.0), (100, 3.6), (150, 3.0), (200, 2.9)],
        optimizer="sophiag",
        tokens_per_iter=110,
        seconds_per_iter=0.6,
    )
    base, soph = summarize([adamw, sophia], adamw)

    assert base.target == soph.target == 3.2
    assert base.reach.steps == 400.0
    assert base.ratio.steps == base.ratio.tokens == base.ratio.seconds == 1.0
    steps = 100 + 50 * 2 / 3
    assert soph.reach.steps == pytest.approx(steps)
    assert soph.ratio.steps == pytest.approx(steps / 400)
    assert soph.reach.tokens == pytest.approx(steps * 110)
    assert soph.ratio.tokens == pytest.approx(steps * 110 / (400 * 100))
    assert soph.ratio.seconds == pytest.approx(steps * 0.6 / (400 * 0.5))
    assert soph.reached and soph.run.final_val_loss == 2.9

    line = format_table([base, soph]).splitlines()[2]
    assert line.startswith("sophia") and "(0.33x)" in line and "(0.37x)" in line
    assert "(0.40x)" in line


def test_last_hellaswag_accuracy_sits_beside_the_final_val_loss():
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0), (200, 3.2)])
    sophia = make_run("sophia", [(0, 10.0), (100, 3.6), (200, 3.0)], optimizer="sophiag")
    assert "hellaswag" not in format_table(summarize([adamw, sophia], adamw))
    for row, acc_norm in zip(sophia.evals, (0.25, 0.2617, 0.2734)):
        row.update({"eval/hellaswag_acc": acc_norm - 0.01, "eval/hellaswag_acc_norm": acc_norm})
    base, soph = summarize([adamw, sophia], adamw)
    assert (soph.flat()["hellaswag_acc"], soph.flat()["hellaswag_acc_norm"]) == (pytest.approx(0.2634), 0.2734)
    assert base.flat()["hellaswag_acc"] is base.flat()["hellaswag_acc_norm"] is None
    header, base_line, soph_line = format_table([base, soph]).splitlines()
    assert "final val loss  hellaswag acc_norm  steps to target" in header
    assert "3.0000          0.2734" in soph_line and "3.2000          -" in base_line


def test_baseline_that_dips_below_its_final_loss_earlier_uses_its_first_crossing():
    # final 3.6; the baseline first got there between 100 (4.0) and 200 (3.5): at 180
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0), (200, 3.5), (300, 3.6), (400, 3.6)])
    sophia = make_run("sophia", [(0, 10.0), (90, 3.6), (200, 3.0)], optimizer="sophiag")
    base, soph = summarize([adamw, sophia], adamw)
    assert base.reach.steps == pytest.approx(180.0)
    assert soph.reach.steps == 90.0
    assert soph.ratio.steps == pytest.approx(0.5)


def test_run_that_never_reaches_target_is_reported_as_not_reached():
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0), (200, 3.2)])
    lion = make_run("lion", [(0, 10.0), (100, 5.0), (200, 3.4)], optimizer="lion")
    row = summarize([adamw, lion], adamw)[1]
    assert not row.reached
    assert row.reach == Reach() and row.ratio == Reach()  # None for steps, tokens and seconds
    line = format_table(summarize([adamw, lion], adamw)).splitlines()[2]
    assert line.count("not reached") == 3 and "x)" not in line


def test_single_eval_points_and_a_baseline_already_at_target_at_iter_0():
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0)])
    fresh = make_run("fresh", [(0, 10.5)])
    row = summarize([adamw, fresh], adamw)[1]
    assert row.run.final_val_loss == 10.5 and not row.reached

    # a baseline with one eval reaches its own target at x=0: ratios are undefined, not inf
    only_init = make_run("init", [(0, 10.0)])
    other = make_run("other", [(0, 11.0), (100, 5.0)])
    base, row = summarize([only_init, other], only_init)
    assert base.reach.steps == 0.0 and base.ratio.steps is None
    assert row.reach.steps == pytest.approx(100 / 6) and row.ratio.steps is None
    assert "(n/a)" in format_table([base, row])


def test_incomplete_and_diverged_runs_are_flagged():
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0), (200, 3.2)])
    partial = make_run("partial", [(0, 10.0), (100, 3.9)])
    partial.config["max_iters"] = 1000
    diverged = make_run("diverged", [(0, 10.0), (100, 3.0), (200, math.nan)])
    summary = summarize([adamw, partial, diverged], adamw)
    assert summary[1].run.incomplete and not summary[0].run.incomplete
    assert summary[2].diverged and summary[2].reached  # reached 3.2 before diverging
    table = format_table(summary)
    assert "incomplete (100/1000 iters)" in table and "diverged" in table


def test_baseline_without_a_finite_final_loss_is_an_error():
    adamw = make_run("adamw", [(0, 10.0), (100, math.nan)])
    with pytest.raises(ValueError, match="--baseline"):
        summarize([adamw], adamw)
    empty = RunRecord("empty", "empty", {}, [])
    with pytest.raises(ValueError, match="no val/loss rows"):
        summarize([empty], empty)


# --------------------------------------------------------------------------- baseline choice


def test_pick_baseline_default_explicit_and_unknown():
    sophia = make_run("sophia", [(0, 10.0)], optimizer="sophiag")
    adamw = make_run("adamw lr=6e-4 seed=0", [(0, 10.0)])
    lion = make_run("lion", [(0, 10.0)], optimizer="lion")
    assert pick_baseline([sophia, adamw])[0] is adamw
    run, why = pick_baseline([sophia, lion])
    assert run is sophia and "first run" in why
    assert pick_baseline([sophia, adamw], "sophia")[0] is sophia
    with pytest.raises(ValueError, match="'adamw lr=6e-4 seed=0'"):
        pick_baseline([sophia, adamw], "nope")


# --------------------------------------------------------------------------- loading


def test_load_run_labels_from_config(tmp_path):
    run = load_run(write_run(tmp_path, "s", [(0, 10.0), (50, 4.0)], optimizer="sophiag", lr=6e-4, seed=3))
    assert run.label == "sophiag lr=6e-4 seed=3"
    assert [r["val/loss"] for r in run.evals] == [10.0, 4.0]
    assert load_run(tmp_path / "s", label="mine").label == "mine"


@pytest.mark.parametrize("missing", ["metrics.jsonl", "config.json"])
def test_load_run_missing_file_names_the_fix(tmp_path, missing):
    run_dir = write_run(tmp_path, "r", [(0, 10.0)])
    (run_dir / missing).unlink()
    with pytest.raises(ValueError, match=f"{missing} not found: pass a train.py out_dir"):
        load_run(run_dir)


def test_read_metrics_skips_half_written_last_line_but_not_a_broken_middle_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    good = json.dumps({"iter": 0, "tokens_seen": 0, "time_s": 0.0, "val/loss": 10.0})
    path.write_text(good + "\n" + '{"iter": 1, "tokens_')
    assert read_metrics(path) == [json.loads(good)]
    path.write_text(good + "\n{oops\n" + good + "\n")
    with pytest.raises(ValueError, match="metrics.jsonl:2: not valid JSON"):
        read_metrics(path)


def test_clean_rows_nan_spellings_resume_rewind_and_missing_keys():
    def x(it):
        return {"iter": it, "tokens_seen": it * 10, "time_s": float(it)}

    rows = clean_rows(
        [
            {**x(0), "val/loss": None},
            {**x(10), "val/loss": "NaN"},
            {**x(20), "val/loss": 3.0},
            {**x(30), "train/loss": 2.9},
            # resumed from the checkpoint at iter 20: rows >= 20 are redone
            {**x(20), "val/loss": 3.1},
            {**x(30), "train/loss": 2.8},
        ],
        "test",
    )
    assert [r["iter"] for r in rows] == [0, 10, 20, 30]
    assert math.isnan(rows[0]["val/loss"]) and math.isnan(rows[1]["val/loss"])
    assert rows[2]["val/loss"] == 3.1 and rows[3]["train/loss"] == 2.8
    with pytest.raises(ValueError, match=r"row 1 lacks \['time_s'\]"):
        clean_rows([{"iter": 0, "tokens_seen": 0}], "test")


# --------------------------------------------------------------------------- wandb


def test_rows_from_wandb_history_converts_api_rows():
    # scan_history rows are sparse: only the keys logged at that step, plus wandb's own
    history = [
        {
            "_step": 0,
            "_runtime": 1.2,
            "_timestamp": 1.7e9,
            "iter": 0,
            "tokens_seen": 0,
            "time_s": 0.0,
            "val/loss": 10.9,
        },
        {"_step": 10, "iter": 10, "tokens_seen": 640, "time_s": 4.0, "train/loss": "NaN", "mfu": None},
        # train.py logs a non-finite val loss as null
        {"_step": 20, "iter": 20, "tokens_seen": 1280, "time_s": 8.0, "val/loss": None},
        {"_step": 21, "samples": "a table row from another wandb.log call"},
    ]
    rows = clean_rows(rows_from_wandb_history(history), "wandb")
    assert rows[0] == {"iter": 0, "tokens_seen": 0, "time_s": 0.0, "val/loss": 10.9}
    assert set(rows[1]) == {"iter", "tokens_seen", "time_s", "train/loss", "mfu"}
    assert math.isnan(rows[1]["train/loss"]) and math.isnan(rows[2]["val/loss"])
    assert len(rows) == 3
    run = RunRecord("r", "wandb:t/p/r", {}, rows)
    assert math.isnan(run.final_val_loss)  # a diverged run stays diverged
    with pytest.raises(ValueError, match="no 'iter' key"):
        rows_from_wandb_history([{"_step": 0, "loss": 3.0}])


class FakeWandbError(Exception):
    pass


def fake_wandb(runs, fail=None):
    """A stand-in for the wandb module: Api().runs(project, filters) over fake runs."""

    class Api:
        def __init__(self, timeout=None):
            if fail:
                raise FakeWandbError(fail)

        def runs(self, project, filters=None):
            if not filters:
                return runs
            ref = filters["$or"][0]["name"]
            return [r for r in runs if ref in (r.id, r.name)]

    return types.SimpleNamespace(Api=Api, errors=types.SimpleNamespace(Error=FakeWandbError))


def fake_api_run(run_id, name, config, evals):
    history = [{"_step": i, **row} for i, row in enumerate(eval_rows(evals))]
    return types.SimpleNamespace(id=run_id, name=name, config=config, scan_history=lambda: iter(history))


def test_load_wandb_runs_by_id_or_name(monkeypatch):
    api_runs = [
        fake_api_run(
            "a1b2", "adamw-125m", {"optimizer_name": "adamw", "learning_rate": 6e-4, "seed": 0}, [(0, 10.0), (100, 3.0)]
        ),
        fake_api_run("c3d4", "sophia-125m", {}, [(0, 10.0), (100, 2.9)]),
        fake_api_run("e5f6", "sophia-125m", {}, [(0, 10.0)]),
    ]
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(api_runs))
    runs = load_wandb_runs("team/proj", ["a1b2", "c3d4"])
    assert [r.label for r in runs] == ["adamw lr=6e-4 seed=0", "sophia-125m"]
    assert runs[0].source == "wandb:team/proj/a1b2" and runs[1].final_val_loss == 2.9
    assert len(load_wandb_runs("team/proj")) == 3
    with pytest.raises(ValueError, match="2 runs in wandb project team/proj"):
        load_wandb_runs("team/proj", ["sophia-125m"])
    with pytest.raises(ValueError, match="ENTITY/PROJECT"):
        load_wandb_runs("proj", ["a1b2"])


def test_load_wandb_runs_not_logged_in_gives_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb([], fail="No API key configured"))
    with pytest.raises(ValueError, match="No API key configured -- run `wandb login`"):
        load_wandb_runs("team/proj", ["a1b2"])


# --------------------------------------------------------------------------- figure


def test_ema_is_bias_corrected_and_skips_nan():
    assert ema([2.0, 2.0, 2.0], 0.9) == pytest.approx([2.0, 2.0, 2.0])
    out = ema([1.0, math.nan, 3.0], 0.5)
    assert out[0] == 1.0 and math.isnan(out[1]) and out[2] == pytest.approx((0.25 + 1.5) / 0.75)


def test_auto_smooth_window_is_a_fixed_share_of_the_run():
    short = make_run("short", [(i, 5.0) for i in range(61)])  # 60 train rows: 3-row window
    long = make_run("long", [(i, 5.0) for i in range(4001)])  # 4000 rows: 100-row window
    assert auto_smooth([short]) == pytest.approx(1 - 1 / 3)
    assert auto_smooth([short, long]) == pytest.approx(0.99)


def test_plot_writes_png_with_one_panel_per_axis(tmp_path):
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0), (200, 3.2)])
    sophia = make_run("sophia", [(0, 10.0), (100, 3.5), (200, 3.0)], optimizer="sophiag")
    for row in sophia.rows:
        if "train/loss" in row:
            row["train/win_rate"] = 0.3
    out = tmp_path / "sub" / "compare.png"
    fig = plot_runs([adamw, sophia], adamw, summarize([adamw, sophia], adamw), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 3 val-loss panels, train loss and win_rate; the ratios are in the printed table, not the figure
    assert len(fig.axes) == 5
    steps, tokens, clock, train, win = fig.axes
    assert steps.get_xlabel().startswith("steps") and tokens.get_xlabel().startswith("tokens")
    assert clock.get_xlabel().startswith("training wall-clock (s")
    assert all(ax.get_ylabel().startswith("val loss") for ax in (steps, tokens, clock))
    assert all(ax.get_legend() is not None for ax in (steps, tokens, clock, train, win))
    target_lines = [line for line in steps.get_lines() if line.get_linestyle() == "--"]
    assert target_lines and target_lines[0].get_ydata()[0] == 3.2
    assert len([line for line in win.get_lines() if line.get_label().startswith("sophia")]) == 1


def test_plot_without_sophia_runs_says_so(tmp_path):
    adamw = make_run("adamw", [(0, 10.0), (100, 4.0)])
    fig = plot_runs([adamw], adamw, summarize([adamw], adamw), tmp_path / "c.png")
    assert any("no Sophia runs" in t.get_text() for t in fig.axes[4].texts)


# --------------------------------------------------------------------------- CLI


def test_cli_prints_table_and_writes_png_csv_json(tmp_path, capsys):
    sophia = write_run(tmp_path, "sophia", [(0, 10.0), (50, 4.0), (100, 3.0)], optimizer="sophiag", win_rate=True)
    adamw = write_run(tmp_path, "adamw", [(0, 10.0), (100, 4.0), (200, 3.0)])
    out = tmp_path / "compare.png"
    argv = [
        str(sophia),
        str(adamw),
        "--out",
        str(out),
        "--csv",
        str(tmp_path / "t.csv"),
        "--json",
        str(tmp_path / "t.json"),
    ]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "baseline: adamw lr=6e-4 seed=0 (the first run with optimizer_name='adamw')" in stdout
    assert "0.50x" in stdout and out.is_file()
    report = json.loads((tmp_path / "t.json").read_text())
    assert report["target"] == 3.0 and report["runs"][0]["steps_ratio"] == 0.5
    assert (tmp_path / "t.csv").read_text().startswith("label,source,")

    assert main(argv[:2] + ["--out", str(out), "--labels", "S", "A", "--baseline", "S"]) == 0
    assert "baseline: S (--baseline)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        ([], "give RUN_DIRs"),
        (["{tmp}/missing"], "missing/metrics.jsonl not found: pass a train.py out_dir"),
        (["{tmp}/adamw", "--labels", "a", "b"], "got 2 --labels for 1 runs"),
        (["{tmp}/adamw", "--runs", "x"], "add --wandb ENTITY/PROJECT"),
        (["{tmp}/adamw", "--baseline", "nope"], "--baseline 'nope' matches 0 runs"),
        (["{tmp}/adamw", "--smooth", "1"], "must be in [0, 1)"),
    ],
)
def test_cli_bad_input_exits_nonzero_with_one_line(tmp_path, capsys, argv, message):
    write_run(tmp_path, "adamw", [(0, 10.0), (100, 4.0)])
    assert main([a.format(tmp=tmp_path) for a in argv] + ["--out", str(tmp_path / "c.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("compare.py: error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "c.png").exists()


def test_runs_as_a_script(tmp_path):
    adamw = write_run(tmp_path, "adamw", [(0, 10.0), (100, 4.0)])
    out = tmp_path / "c.png"
    result = subprocess.run(
        [sys.executable, "scripts/experiments/compare.py", str(adamw), "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "baseline: adamw lr=6e-4 seed=0" in result.stdout and out.is_file()
    missing = subprocess.run(
        [sys.executable, "scripts/experiments/compare.py", str(tmp_path / "nope")],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert missing.returncode == 2 and "not found" in missing.stderr
