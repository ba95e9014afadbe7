"""scripts/experiments/ladder_plot.py and compare.py --win_rate on run directories written here."""
import json

import pytest

from errors import UserError
from scripts.experiments import compare, ladder_plot


def write_run(run_dir, optimizer, rates, warmup=10, **config):
    run_dir.mkdir(parents=True)
    cfg = {"optimizer_name": optimizer, "warmup_iters": warmup, "rho": 0.05, "learning_rate": 1e-3,
           "n_layer": 2, "n_params": 98_816, **config}
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
    """A finished run whose val loss is `losses` at iters 0, 100, 200."""
    write_run(run_dir, config.pop("optimizer"), [], **config)
    rows = [{"iter": 100 * i, "tokens_seen": 100 * i, "time_s": i, "val/loss": loss} for i, loss in enumerate(losses)]
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_size(sweep_dir, n_layer, n_embd, n_params, per_seed):
    """One size's sweep: per seed, AdamW's val loss falls 3.0, 2.0, 1.5 and Sophia-G's 3.0, 2.5, final."""
    runs = []
    for seed, (_, final) in enumerate(per_seed):
        for optimizer, lr, losses in (("adamw", 1e-2, [3.0, 2.0, 1.5]), ("sophiag", 3e-3, [3.0, 2.5, final])):
            run = sweep_dir / f"{optimizer}_lr{lr:g}_seed{seed}"
            write_evals(run, losses, optimizer=optimizer, n_layer=n_layer, n_embd=n_embd, n_params=n_params)
            runs.append({"optimizer": optimizer, "lr": lr, "seed": seed, "dir": f"elsewhere/{run.name}"})
    summary = {"baseline": "adamw", "runs": runs,
               "selection": {"adamw": {"best_lr": 1e-2}, "sophiag": {"best_lr": 3e-3}},
               "speedup": {"sophiag": {"per_seed": [
                   {"seed": s, "steps_ratio": ratio, "reached": ratio is not None, "final_val_loss": final,
                    "target": 1.5} for s, (ratio, final) in enumerate(per_seed)]}}}
    (sweep_dir / "sweep_summary.json").write_text(json.dumps(summary))
    return sweep_dir


def test_ladder_orders_sizes_by_the_models_parameter_count_and_reports_each_seed(tmp_path, capsys):
    big = write_size(tmp_path / "l", 6, 192, 2_656_512, [(0.8, 1.45), (0.9, 1.48)])
    small = write_size(tmp_path / "s", 2, 64, 98_816, [(None, 1.6), (1.2, 1.49)])
    ladder_plot.main([str(big), str(small), "--out", str(tmp_path / "ladder.png")])
    out = capsys.readouterr().out
    table = [line for line in out.splitlines() if line.startswith("| 2") or line.startswith("| 6")]
    assert table[0].startswith("| 2 x 64 | 0.10M") and "not reached on 1 of 2 seeds" in table[0]
    assert table[1].startswith("| 6 x 192 | 2.66M") and "0.850 (0.800-0.900)x" in table[1]
    assert "-0.035 (-0.050--0.020)" in table[1]
    sizes = json.loads((tmp_path / "ladder.json").read_text())
    assert [s["non_embedding_params"] for s in sizes] == [98_816, 2_656_512]  # config.json's n_params
    # ending at 1.6, Sophia-G reaches it at 200 steps and AdamW at 180 (interpolated); ending at
    # 1.45, Sophia-G reaches AdamW's 1.5 at 100 + 100 * 1.0 / 1.05 steps and AdamW at 200
    assert sizes[0]["seeds"][0]["common_ratio"] == pytest.approx(200 / 180)
    assert sizes[1]["seeds"][0]["common_ratio"] == pytest.approx((100 + 100 / 1.05) / 200)
    assert (tmp_path / "ladder.png").stat().st_size > 0


def test_ladder_without_a_summary_is_one_line(tmp_path):
    with pytest.raises(UserError, match="run scripts/experiments/ladder.sh"):
        ladder_plot.main([str(tmp_path), "--out", str(tmp_path / "x.png")])
