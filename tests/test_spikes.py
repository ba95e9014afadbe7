"""Loss spikes (issue 30, spikes.py): an outlier step is skipped without an extra host sync and leaves
the state untouched, an outlier Hessian estimate stays out of the EMA, outliers close together roll
the run back to its last checkpoint with the data moved on, exactly as a run given that data offset
from the start; a resumed run decides as an uninterrupted one, DDP and FSDP as one process, and a
clean run skips nothing.

Spikes are injected with tests/train_harness.py's patches (--spike_at_iter, --poison_at_iter), in this
process or, under torchrun, in the child processes."""

import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

import checkpoint
import train
from spikes import STD_FLOOR, SpikeGuard, Window
from tests import train_harness
from tests.helpers import REPO, deterministic, metrics_rows, same, straight_and_resumed, tiny_args, train_in_one_launch
from tests.test_reliability import cli

pytestmark = pytest.mark.usefixtures("one_thread")


def inject(monkeypatch, *options):
    """tests/train_harness.py's injections, in this process for this test."""
    train_harness.patch(train_harness.parse(list(map(str, options))), monkeypatch.setattr)


def judge(window, value, z_max=6.0, warmup=4):
    return window.judge(torch.tensor([value], dtype=torch.float64), z_max, warmup).tolist()


# ----------------------------------------------------------------------------- the window


def test_the_window_judges_against_the_values_it_accepted_and_outliers_stay_out():
    rng = np.random.default_rng(0)
    window, accepted = Window(1, 8, torch.device("cpu")), []
    for value in list(rng.normal(3.0, 0.1, 20)) + [9.0, math.nan, math.inf, 3.05]:
        outlier, x, mean, std, z = judge(window, value)
        logs = np.log(accepted[-8:])
        if len(logs) >= 2:  # the statistics of the logarithms of the last 8 accepted values
            assert mean == pytest.approx(np.exp(np.mean(logs)), rel=1e-12)
            assert std == pytest.approx(np.std(logs, ddof=1), rel=1e-12)
            if math.isfinite(value):
                assert z == pytest.approx((np.log(value) - np.mean(logs)) / np.std(logs, ddof=1), rel=1e-9)
        else:
            assert math.isnan(std) and math.isnan(z)
        assert x == value or math.isnan(value)
        assert outlier == (value == 9.0)  # judged from the 4th value on; NaN and inf are the non-finite guard's
        if math.isfinite(value) and not outlier:
            accepted.append(value)
    assert int(window.count) == len(accepted) == 21


def test_a_window_without_noise_has_a_floor_under_its_spread():
    """A constant window has no spread: a value a rounding error above it is no outlier, one 1% above is."""
    window = Window(1, 8, torch.device("cpu"))
    for _ in range(8):
        judge(window, 2.0)
    assert judge(window, 2.0 * (1 + 1e-7))[0] == 0.0
    outlier, _, _, std, z = judge(window, 2.02)
    assert outlier == 1.0 and std < 1e-6 and z == pytest.approx(math.log(1.01) / STD_FLOOR, rel=1e-5)


def test_a_window_resumes_slot_for_slot_and_keeps_its_newest_values_at_another_size():
    window = Window(2, 4, torch.device("cpu"))
    for k in range(1, 7):  # wrapped around: slots hold 5, 6, 3, 4
        window.judge(torch.tensor([k, 10.0 * k], dtype=torch.float64), 6.0, 100)
    copy = Window(2, 4, torch.device("cpu"))
    copy.load_state_dict(window.state_dict())
    assert torch.equal(copy.values, window.values) and int(copy.count) == 6
    smaller = Window(2, 3, torch.device("cpu"))
    smaller.load_state_dict(window.state_dict())
    assert smaller.values[0].exp().tolist() == pytest.approx([4.0, 5.0, 6.0]) and int(smaller.count) == 3
    larger = Window(2, 8, torch.device("cpu"))
    larger.load_state_dict(window.state_dict())
    assert larger.values[1, :4].exp().tolist() == pytest.approx([30.0, 40.0, 50.0, 60.0]) and int(larger.count) == 4


def test_rollbacks_are_due_after_enough_skips_within_the_window():
    cfg = train.TrainConfig(spike_rollback_skips=3, spike_rollback_window=10)
    guard = SpikeGuard(cfg, torch.device("cpu"))
    assert [guard.skipped(it) for it in (5, 12, 16, 19, 21)] == [False, False, False, True, True]
    assert guard.skips == [12, 16, 19, 21]
    assert not SpikeGuard(train.TrainConfig(spike_rollback_skips=0), torch.device("cpu")).skipped(1)


# ----------------------------------------------------------------------------- the skip


def spike_args(data_dir, out_dir, **overrides):
    """The tiny model, with a window short enough to judge within a few steps."""
    return tiny_args(data_dir, out_dir, **{"spike_window": 16, "spike_warmup": 8, "hess_interval": 3, **overrides})


def final_val(out_dir):
    return [r["val/loss"] for r in metrics_rows(out_dir) if "val/loss" in r][-1]


def snapshot(run):
    return {
        "weights": [p.detach().clone() for p in run.raw_model.parameters()],
        "optimizer": {
            k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
            for k, s in run.optimizer.state_dict()["state"].items()
        },
    }


def test_an_injected_spike_is_skipped_untouched_and_the_run_ends_where_the_clean_one_does(
    shakespeare_char, tmp_path, monkeypatch, capsys
):
    """A 100x loss spike at iteration 20 of 60 (no gradient clipping, which would bound it): with the guard the
    update and the Hessian refresh due after it are skipped, the state entering iteration 21 is the one entering
    20, and the run ends within noise of the clean run; without the guard the same spike costs 10x more."""
    common = dict(max_iters=60, eval_interval=30, grad_clip=0.0, log_interval=10)
    train.main(spike_args(shakespeare_char, tmp_path / "clean", **common))
    inject(monkeypatch, "--spike_at_iter", 20)  # (20 + 1) % hess_interval == 0: a refresh is due after it
    train.main(spike_args(shakespeare_char, tmp_path / "off", spike_z=0.0, **common))
    snapshots, train_step = {}, train.train_step

    def watched(run, it):
        snapshots[it] = snapshot(run)
        return train_step(run, it)

    monkeypatch.setattr(train, "train_step", watched)
    capsys.readouterr()
    train.main(spike_args(shakespeare_char, tmp_path / "guard", **common))
    log = capsys.readouterr().out
    assert same(snapshots[20], snapshots[21]) and not same(snapshots[19], snapshots[20])
    assert "\niter 21: outlier step, update skipped: loss 3" in log  # the line of the skip, then the step's line
    rows = {r["iter"]: r for r in metrics_rows(tmp_path / "guard") if "train/loss" in r}
    assert rows[20]["spike/skipped_steps"] == 0 and rows[30]["spike/skipped_steps"] >= 1
    assert all(r["spike/skipped_steps"] == 0 for r in metrics_rows(tmp_path / "clean") if "train/loss" in r)
    assert checkpoint.read_checkpoint(tmp_path / "guard" / "ckpt_00000060.pt")["spike_skipped_steps"] >= 1
    clean, guard, off = (final_val(tmp_path / d) for d in ("clean", "guard", "off"))
    assert abs(guard - clean) < 0.02 and off - clean > 10 * abs(guard - clean), (clean, guard, off)


def test_the_skipped_steps_row_shows_the_spike_and_its_z(shakespeare_char, tmp_path, monkeypatch):
    inject(monkeypatch, "--spike_at_iter", 12)
    train.main(spike_args(shakespeare_char, tmp_path / "run", max_iters=14, eval_interval=14))
    rows = {r["iter"]: r for r in metrics_rows(tmp_path / "run") if "train/loss" in r}
    spike, before = rows[13], rows[12]
    assert spike["train/loss"] > 50 * before["train/loss"] and spike["grad_norm"] > 10 * before["grad_norm"]
    assert spike["spike/loss_z"] > 30 and spike["spike/grad_norm_z"] > 6 and spike["train/win_rate"] is None
    for signal in ("loss", "grad_norm"):  # the window the spike was judged against, which it did not enter
        assert spike[f"spike/{signal}_mean"] == rows[14][f"spike/{signal}_mean"] != before[f"spike/{signal}_mean"]
    assert "spike/loss_std" not in rows[2] and rows[3]["spike/loss_std"] > 0  # a spread from 2 values on
    assert {"spike/estimator_norm_mean", "spike/skipped_hessian", "spike/rollbacks", "spike/data_offset"} <= set(
        rows[12]
    )


@pytest.mark.parametrize("optimizer", ["sophiag", "sophiah"])
def test_an_outlier_hessian_estimate_stays_out_of_the_ema(optimizer, shakespeare_char, tmp_path, monkeypatch, capsys):
    bad = 17  # the refresh after iteration 17 (hess_interval=3): its estimate 1e4x (Sophia-H's spread ~2x)
    current, hessians = {}, {}
    if optimizer == "sophiag":
        estimator = train.gnb_estimator_loss
        monkeypatch.setattr(
            train,
            "gnb_estimator_loss",
            lambda model, x, y: estimator(model, x, y) * (1e4 if current["it"] == bad else 1),
        )
    else:
        hutchinson = train.hutchinson
        monkeypatch.setattr(
            train,
            "hutchinson",
            lambda loss, params: [e * (1e4 if current["it"] == bad else 1) for e in hutchinson(loss, params)],
        )
    refresh_hessian = train.refresh_hessian

    def watched(run, it):
        current["it"] = it
        before = [s["hessian"].clone() for s in run.optimizer.state.values()]
        result = refresh_hessian(run, it)
        hessians[it] = (before, [s["hessian"].clone() for s in run.optimizer.state.values()], result)
        return result

    monkeypatch.setattr(train, "refresh_hessian", watched)
    capsys.readouterr()
    train.main(
        spike_args(
            shakespeare_char, tmp_path / "run", optimizer_name=optimizer, max_iters=24, eval_interval=24, spike_warmup=4
        )
    )
    log = capsys.readouterr().out
    assert [it for it, (_, _, used) in hessians.items() if not used] == [bad]
    assert same(*hessians[bad][:2]) and not same(*hessians[bad - 3][:2])
    assert f"iter {bad + 1}: outlier Hessian estimate, refresh skipped: estimator norm " in log
    assert "outlier step" not in log
    rows = [r for r in metrics_rows(tmp_path / "run") if "train/loss" in r]
    assert [r["spike/skipped_hessian"] for r in rows] == [0] * bad + [1] * (24 - bad)
    assert rows[bad]["spike/estimator_norm_z"] > 6 and all(r["skipped_hessian"] == 0 for r in rows)


def test_the_guard_adds_no_host_sync_to_the_step_or_the_refresh(shakespeare_char, tmp_path, monkeypatch):
    """The verdict rides on the read-back the step and the refresh make anyway: one each, guard on or off."""
    reads, inside = [], [None]
    for name in ("tolist", "item", "__bool__", "__float__", "__int__"):
        method = getattr(torch.Tensor, name)
        monkeypatch.setattr(
            torch.Tensor,
            name,
            lambda t, *a, _m=method, _n=name, **k: (
                reads.append((inside[0], _n)) if inside[0] else None,
                _m(t, *a, **k),
            )[1],
        )
    for fn in ("train_step", "refresh_hessian"):
        original = getattr(train, fn)

        def watched(run, it, _f=original, _n=fn):
            inside[0] = _n
            try:
                return _f(run, it)
            finally:
                inside[0] = None

        monkeypatch.setattr(train, fn, watched)
    counts = {}
    for z in (6.0, 0.0):
        reads.clear()
        train.main(
            spike_args(
                shakespeare_char,
                tmp_path / f"z{z}",
                max_iters=12,
                eval_interval=12,
                log_interval=100,
                spike_warmup=2,
                spike_z=z,
            )
        )
        counts[z] = [sum(1 for fn, _ in reads if fn == name) for name in ("train_step", "refresh_hessian")]
    assert counts[6.0] == counts[0.0] == [12, 4]  # 12 steps, 4 refreshes: one read-back each


@pytest.mark.cuda
def test_the_guard_never_syncs_on_a_gpu():
    """On CUDA the verdict is device work only: torch's sync debug mode raises on any host sync in it."""
    guard = SpikeGuard(train.TrainConfig(spike_warmup=2, spike_window=8), torch.device("cuda"))
    values = [torch.full((), 2.0, device="cuda"), torch.full((), 0.5, device="cuda")]
    torch.cuda.set_sync_debug_mode("error")
    try:
        judged = [guard.judge("step", [v * (1 + 0.01 * k) for v in values]) for k in range(20)]
        judged.append(guard.judge("step", [v * 100 for v in values]))
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert [j[0].item() for j in judged] == [0.0] * 20 + [1.0]


# ----------------------------------------------------------------------------- resume and rollback


def test_a_resumed_run_judges_as_the_uninterrupted_one_and_an_older_checkpoint_still_resumes(
    shakespeare_char, tmp_path, monkeypatch
):
    """A spike at iteration 9 after a resume at 6 is judged against the window restored from the checkpoint:
    the same skip, rows and checkpoint as the run never stopped. A checkpoint written before the guard
    existed resumes too, its windows starting empty (so the spike at 9 comes before they judge)."""
    inject(monkeypatch, "--spike_at_iter", 9)
    common = dict(
        max_iters=12, eval_interval=6, lr_decay_iters=12, dropout=0.1, hess_interval=3, spike_window=8, spike_warmup=4
    )
    straight, split, a, b = straight_and_resumed(shakespeare_char, tmp_path, **common)
    assert deterministic(straight) == deterministic(split)
    assert [r["spike/skipped_steps"] for r in straight if "train/loss" in r] == [0] * 9 + [1] * 3
    assert same(a["spike_guard"], b["spike_guard"]) and a["spike_skipped_steps"] == 1
    older = tmp_path / "older"
    older.mkdir()
    ckpt = checkpoint.read_checkpoint(tmp_path / "split" / "ckpt_00000006.pt")
    added = ("spike_skipped_steps", "spike_skipped_hessian", "rollbacks", "rollback_batches", "spike_guard")
    torch.save({k: v for k, v in ckpt.items() if k not in added}, older / "ckpt_00000006.pt")
    train.main(tiny_args(shakespeare_char, older, init_from="resume", **common))
    rows = [r for r in metrics_rows(older) if "train/loss" in r]
    assert [r["iter"] for r in rows] == list(range(7, 13)) and all(r["spike/skipped_steps"] == 0 for r in rows)
    assert checkpoint.read_checkpoint(older / "ckpt_00000012.pt")["spike_guard"]["windows"]["step"]["count"] == 6


ROLLBACK = dict(
    max_iters=24,
    eval_interval=4,
    lr_decay_iters=24,
    dropout=0.1,
    hess_interval=3,
    spike_window=8,
    spike_warmup=4,
    spike_rollback_skips=3,
    spike_rollback_window=10,
    spike_rollback_batches=2,
)
# what sets a rolled-back run apart from one given its data offset: the counts of what happened, the offset's origin
APART = {"time_s", "config", "wandb_run_id", "rollbacks", "rollback_batches", "spike_skipped_steps"}


def test_a_rollback_resumes_exactly_as_a_run_given_the_data_offset_from_the_start(
    shakespeare_char, tmp_path, monkeypatch, capsys
):
    """Spikes in the batches of iterations 13-15: three skips within 10 steps, then the run goes back to its
    checkpoint of iteration 12 and moves the data on past 15 plus 2 batches (an offset of 6). It ends bit
    for bit as a run stopped at 12 and resumed with skip_batches=6, which never meets those batches."""
    inject(monkeypatch, "--spike_at_iter", "13,14,15")
    capsys.readouterr()
    train.main(tiny_args(shakespeare_char, tmp_path / "rolled", **ROLLBACK))
    log = capsys.readouterr().out
    lines = [line for line in log.splitlines() if "outlier" in line]
    assert [line.partition(": outlier step, update skipped: ")[0] for line in lines[:3]] == [
        "iter 14",
        "iter 15",
        "iter 16",
    ]
    assert lines[3:] == [
        f"iter 16: 3 outlier steps within 10 steps: rolled back to iter 12 "
        f"({tmp_path / 'rolled' / 'ckpt_00000012.pt'}), the data moved on by 6 batches "
        f"(rollback 1 of at most 5)"
    ]
    train.main(tiny_args(shakespeare_char, tmp_path / "offset", **{**ROLLBACK, "max_iters": 12}))
    train.main(tiny_args(shakespeare_char, tmp_path / "offset", **ROLLBACK, init_from="resume", skip_batches=6))
    rolled, offset = (deterministic(metrics_rows(tmp_path / d)) for d in ("rolled", "offset"))
    assert [r["iter"] for r in rolled] == [r["iter"] for r in offset]  # the rolled-back rows 13-16 are gone
    counts = [(r["iter"], r["spike/skipped_steps"], r["spike/rollbacks"]) for r in rolled if "train/loss" in r]
    assert counts == [(it, 0, 0) for it in range(1, 13)] + [(it, 3, 1) for it in range(13, 25)]
    apart = ("spike/skipped_steps", "spike/rollbacks")
    assert [{k: v for k, v in r.items() if k not in apart} for r in rolled] == [
        {k: v for k, v in r.items() if k not in apart} for r in offset
    ]
    a, b = (checkpoint.read_checkpoint(tmp_path / d / "ckpt_00000024.pt") for d in ("rolled", "offset"))
    assert [a[k] for k in ("rollbacks", "rollback_batches", "spike_skipped_steps")] == [1, 6, 3]
    assert [b[k] for k in ("rollbacks", "rollback_batches", "spike_skipped_steps")] == [0, 0, 0]
    for key in a.keys() - APART:
        assert same(a[key], b[key]), key


def test_a_rollback_waits_for_a_checkpoint_and_rollbacks_that_do_not_help_stop_the_run(
    shakespeare_char, tmp_path, monkeypatch, capsys
):
    """Spikes at 5-7, before the first checkpoint (8): nothing to roll back to, the run carries on. Spikes at
    9 and every batch from 14 on: the rollback to 8 moves the data onto more of them, and with
    spike_max_rollbacks=1 the next rollback due stops the run: one line, exit 2, checkpoints kept."""
    inject(monkeypatch, "--spike_at_iter", ",".join(map(str, [5, 6, 7, 9, 10, 11, *range(14, 40)])))
    out = tmp_path / "run"
    code, log, err = cli(
        monkeypatch,
        capsys,
        tiny_args(shakespeare_char, out, **{**ROLLBACK, "eval_interval": 8, "spike_max_rollbacks": 1}),
    )
    assert "iter 8: 3 outlier steps within 10 steps, but no checkpoint to roll back to yet: carrying on\n" in log
    assert "iter 12: 3 outlier steps within 10 steps: rolled back to iter 8 (" in log
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith(
        "error: 3 outlier steps within 10 steps at iter 11 after 1 rollbacks: stopping. Lower learning_rate"
    )
    assert [p.name for p in checkpoint.checkpoint_paths(out)] == ["ckpt_00000008.pt"]


def test_ddp_and_fsdp_skip_and_roll_back_as_one_process(shakespeare_char, tmp_path, monkeypatch):
    """Two gloo ranks, DDP then FSDP in one launch, and one process: the same skips, the same rollback, the
    same losses (up to the all-reduce's summation order). The verdict's inputs are equal on every rank."""
    common = {**ROLLBACK, "max_iters": 20}
    spikes = ["--spike_at_iter", "13,14,15"]
    train_in_one_launch(
        [tiny_args(shakespeare_char, tmp_path / p, parallelism=p, **common) for p in ("ddp", "fsdp")],
        tmp_path,
        faults=spikes,
    )
    inject(monkeypatch, *spikes)
    train.main(tiny_args(shakespeare_char, tmp_path / "one", **common))
    one = metrics_rows(tmp_path / "one")
    assert one[-1]["iter"] == 20 and one[-2]["spike/rollbacks"] == 1 and one[-2]["spike/data_offset"] == 6
    for parallelism in ("ddp", "fsdp"):
        rows = metrics_rows(tmp_path / parallelism)
        assert [r["iter"] for r in rows] == [r["iter"] for r in one]
        for r, r_one in zip(rows, one):
            for k in ("spike/skipped_steps", "spike/skipped_hessian", "spike/rollbacks", "spike/data_offset"):
                assert r.get(k) == r_one.get(k), (parallelism, r["iter"], k)
            for k in ("train/loss", "val/loss", "grad_norm", "spike/loss_mean", "spike/grad_norm_std"):
                if r_one.get(k) is not None:
                    assert r[k] == pytest.approx(r_one[k], rel=1e-5), (parallelism, r["iter"], k)


def test_an_fsdp_run_rolls_back_to_a_one_file_checkpoint(shakespeare_char, tmp_path, monkeypatch):
    """An FSDP run resumed from a one-file checkpoint that spikes before writing its first sharded one rolls
    back into its live shards from the file: as a one-process DDP run does from the same file."""
    common = {**ROLLBACK, "eval_interval": 12}
    train.main(tiny_args(shakespeare_char, tmp_path / "file", **{**common, "max_iters": 12}))
    inject(monkeypatch, "--spike_at_iter", "13,14,15")
    for parallelism in ("fsdp", "ddp"):
        shutil.copytree(tmp_path / "file", tmp_path / parallelism)
        train.main(
            tiny_args(shakespeare_char, tmp_path / parallelism, parallelism=parallelism, init_from="resume", **common)
        )
    fsdp, ddp = (metrics_rows(tmp_path / p) for p in ("fsdp", "ddp"))
    assert fsdp[-2]["spike/rollbacks"] == 1 and [r["iter"] for r in fsdp] == [r["iter"] for r in ddp]
    assert [p.name for p in checkpoint.checkpoint_paths(tmp_path / "fsdp")] == ["ckpt_00000024", "ckpt_00000012.pt"]
    for r, r_ddp in zip(fsdp, ddp):
        for k in ("train/loss", "val/loss"):
            if k in r:
                assert r[k] == pytest.approx(r_ddp[k], rel=1e-5), (r["iter"], k)


# ----------------------------------------------------------------------------- no false positives


@pytest.mark.parametrize("optimizer", ["sophiag", "adamw"])
def test_the_char_configs_first_steps_skip_nothing(optimizer, shakespeare_char, tmp_path):
    """config/train_shakespeare_char_*.py's first 40 steps exactly as its full run takes them (the schedule of
    its 1000 steps), judged from the 8th on, far earlier than the default spike_warmup=128 lets the guard: the
    steepest part of training flags nothing. The full runs of every CPU config: docs/reliability.md."""
    train.main(
        [
            str(REPO / "config" / f"train_shakespeare_char_{optimizer}.py"),
            f"--data_dir={shakespeare_char}",
            f"--out_dir={tmp_path}",
            "--max_iters=40",
            "--lr_decay_iters=1000",
            "--eval_interval=40",
            "--eval_iters=1",
            "--log_interval=8",
            "--device=cpu",
            "--compile=False",
            "--spike_warmup=8",
        ]
    )
    rows = [r for r in metrics_rows(tmp_path) if "train/loss" in r]
    assert rows[-1]["iter"] == 40 and rows[-1]["spike/loss_z"] is not None
    assert rows[-1]["spike/skipped_steps"] == rows[-1].get("spike/skipped_hessian", 0) == 0


def test_scripts_spikes_tabulates_a_clean_and_an_injected_run(shakespeare_char, tmp_path):
    overrides = [
        a
        for a in tiny_args(
            shakespeare_char, tmp_path, max_iters=24, eval_interval=12, spike_window=16, spike_warmup=8, log_interval=4
        )
        if not a.startswith("--out_dir")
    ]
    done = subprocess.run(
        [
            sys.executable,
            "scripts/experiments/spike_runs.py",
            "config/train_shakespeare_char_sophiag.py",
            "--injections",
            "clean,spike",
            "--at",
            "16",
            "--out",
            str(tmp_path / "m"),
            *overrides,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    rows = {
        line.split(" | ")[1]: line.split(" | ")[2:]
        for line in done.stdout.splitlines()
        if line.startswith("| train_shakespeare_char_sophiag | ")
    }
    assert rows["clean"][:3] == ["0", "0", "0"] and rows["spike"][:3] == ["1", "0", "0"]
    assert {"loss", "grad_norm", "estimator_norm"} <= set(rows)  # the clean run's margins
