"""scripts/experiments/regime_plot.py (the ladder and the regime map) and compare.py --win_rate on run
directories written here."""

import json

import pytest

from errors import UserError
from scripts.experiments import compare, regime_plot


def write_run(run_dir, optimizer, rates, warmup=10, **config):
    run_dir.mkdir(parents=True)
    cfg = {
        "optimizer_name": optimizer,
        "warmup_iters": warmup,
        "rho": 0.05,
        "learning_rate": 1e-3,
        "n_layer": 2,
        "n_params": 98_816,
        **config,
    }
    (run_dir / "config.json").write_text(json.dumps(cfg))
    rows = [{"iter": 10 * (i + 1), "tokens_seen": 0, "time_s": 0, "train/win_rate": r} for i, r in enumerate(rates)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return run_dir


def test_win_rate_counts_the_steps_inside_the_band_after_warmup(tmp_path, capsys):
    sophia = write_run(tmp_path / "s", "sophiag", [0.0, 0.05, 0.2, 0.3, 0.6])  # the first row is warmup
    adamw = write_run(tmp_path / "a", "adamw", [])
    for run_dir in (sophia, adamw):
        with open(run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps({"iter": 50, "tokens_seen": 50, "time_s": 5, "val/loss": 2.0}) + "\n")
    compare.main([str(adamw), str(sophia), "--win_rate", "--out", str(tmp_path / "c.png")])
    lines = [line for line in capsys.readouterr().out.splitlines() if "win_rate after warmup" in line]
    assert len(lines) == 1 and "0.050-0.600" in lines[0] and "50% of 4 logged steps inside 0.1-0.5" in lines[0]


def write_evals(run_dir, losses, **config):
    """A finished run whose val loss is `losses` at iters 0, 100, 200 (eval train loss 0.05 below)."""
    write_run(run_dir, config.pop("optimizer"), [], **config)
    rows = [
        {"iter": 100 * i, "tokens_seen": 100 * i, "time_s": i, "val/loss": loss, "eval/train_loss": loss - 0.05}
        for i, loss in enumerate(losses)
    ]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_cell(cell_dir, n_layer, n_embd, per_seed, max_iters=200, total_batch_size=32):
    """One cell's sweeps: per seed, AdamW's val loss falls 3.0, 2.0, 1.5 and Sophia-G's 3.0, 2.5, final."""
    runs = []
    shape = dict(
        n_layer=n_layer,
        n_head=2,
        n_embd=n_embd,
        bias=False,
        block_size=64,
        max_iters=max_iters,
        total_batch_size=total_batch_size,
        dataset="nowhere",
    )
    for seed, final in enumerate(per_seed):
        for optimizer, lr, losses in (("adamw", 1e-2, [3.0, 2.0, 1.5]), ("sophiag", 3e-3, [3.0, 2.5, final])):
            run = cell_dir / f"{optimizer}_lr{lr:g}_seed{seed}"
            write_evals(run, losses, optimizer=optimizer, **shape)
            runs.append({"optimizer": optimizer, "lr": lr, "seed": seed, "dir": f"elsewhere/{run.name}"})
    summary = {"runs": runs, "selection": {"adamw": {"best_lr": 1e-2}, "sophiag": {"best_lr": 3e-3}}}
    (cell_dir / "sweep_summary.json").write_text(json.dumps(summary))
    return cell_dir


def test_cells_along_each_axis_are_compared_per_seed(tmp_path, capsys):
    """Three sizes at one length and batch (the ladder), and the small size 4x longer (the horizon)."""
    big = write_cell(tmp_path / "l", 6, 192, [1.45, 1.48])
    small = write_cell(tmp_path / "s", 2, 64, [1.6, 1.49])
    longer = write_cell(tmp_path / "s4", 2, 64, [1.4], max_iters=800)
    regime_plot.main([str(big), str(small), str(longer), "--out", str(tmp_path / "map.png")])
    rows = {line.split(" | ")[0][2:]: line for line in capsys.readouterr().out.splitlines() if line.startswith("| ")}
    cells = {c["cell"]: c for c in json.loads((tmp_path / "map.json").read_text())}
    assert cells["s"]["params"] == 12 * 2 * 64**2 + 2 * 2 * 64 + 64  # blocks and final norm, no embeddings
    assert cells["l"]["params"] == 12 * 6 * 192**2 + 2 * 6 * 192 + 192
    assert cells["s4"]["tokens_per_param"] == pytest.approx(4 * cells["s"]["tokens_per_param"])
    # ending at 1.6, Sophia-G reaches it at 200 steps and AdamW at 180 (interpolated); ending at
    # 1.45, Sophia-G reaches AdamW's 1.5 at 100 + 100 * 1.0 / 1.05 steps and AdamW at 200
    assert cells["s"]["seeds"][0]["ratio"] == pytest.approx(200 / 180)
    assert cells["s"]["seeds"][0]["to_adamw"] is None
    assert cells["l"]["seeds"][0]["ratio"] == pytest.approx((100 + 100 / 1.05) / 200)
    assert "| +0.045 (-0.010 to +0.100) | 1.05 (1.00 to 1.11)x | 1.00x (1 of 2 seeds not) |" in rows["s"]
    assert cells["s"]["seeds"][0]["overfit"] == pytest.approx(0.05) and cells["s"]["epochs"] is None
    assert (tmp_path / "map.png").stat().st_size > 0 and (tmp_path / "map.md").read_text().startswith("| cell")


def test_a_cell_without_a_summary_or_alone_on_its_axes_is_one_line(tmp_path):
    with pytest.raises(UserError, match="run the cell's sweeps first"):
        regime_plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")])
    with pytest.raises(UserError, match="nothing to draw"):
        regime_plot.main([str(write_cell(tmp_path / "one", 2, 64, [1.6])), "--out", str(tmp_path / "x.png")])


def test_groups_draws_the_per_group_telemetry_and_refuses_runs_without_it(tmp_path):
    sophia = write_run(tmp_path / "s", "sophiag", [0.2, 0.3])
    adamw = write_run(tmp_path / "a", "adamw", [])
    with open(sophia / "metrics.jsonl", "a") as f:
        for it in (10, 20):
            row = {"iter": it, "tokens_seen": it, "time_s": it, "val/loss": 3.0 - it / 100}
            row |= {f"group/{g}/{k}": 0.01 * it for g in ("tok_emb", "mlp_in") for k in ("update_ratio", "win_rate")}
            f.write(json.dumps(row) + "\n")
    with open(adamw / "metrics.jsonl", "a") as f:
        f.write(json.dumps({"iter": 20, "tokens_seen": 20, "time_s": 2, "val/loss": 2.5}) + "\n")
    compare.main([str(adamw), str(sophia), "--out", str(tmp_path / "c.png"), "--groups", str(tmp_path / "g.png")])
    assert (tmp_path / "g.png").stat().st_size > 0
    assert compare.main([str(adamw), "--out", str(tmp_path / "c.png"), "--groups", str(tmp_path / "x.png")]) == 2
