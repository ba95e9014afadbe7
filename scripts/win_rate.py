"""
Is Sophia's clipping mechanism engaged? Per Sophia run, the logged `train/win_rate` (the fraction of
coordinates NOT clipped) after warmup: its range, and the share of logged steps inside the official
guidance band 0.1-0.5; optionally a plot of the traces.

    python scripts/win_rate.py out/char4/sophiag_lr3e-3_seed0 out/char4/sophiag_lr3e-3_seed1 --plot win.png
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from errors import UserError, run_cli  # noqa: E402

BAND = (0.1, 0.5)


def trace(run_dir):
    """(steps, win rates) of a run's logged steps after warmup, and its config."""
    run_dir = Path(run_dir)
    try:
        config = json.loads((run_dir / "config.json").read_text())
        rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line]
    except (OSError, ValueError) as e:
        raise UserError(f"{run_dir} is not a readable train.py out_dir ({e})") from None
    if not config["optimizer_name"].startswith("sophia"):
        raise UserError(f"{run_dir} trained {config['optimizer_name']}, which has no win_rate: pass Sophia runs")
    points = [(r["iter"], r["train/win_rate"]) for r in rows
              if r.get("train/win_rate") is not None and r["iter"] > config["warmup_iters"]]
    if not points:
        raise UserError(f"{run_dir} has logged no win_rate after warmup ({config['warmup_iters']} steps) yet")
    steps, rates = zip(*points)
    return list(steps), list(rates), config


def summary(run_dir):
    steps, rates, config = trace(run_dir)
    inside = sum(BAND[0] <= r <= BAND[1] for r in rates) / len(rates)
    return (f"{run_dir}: rho {config['rho']:g}, lr {config['learning_rate']:g}: win_rate after warmup "
            f"{min(rates):.3f}-{max(rates):.3f} (median {statistics.median(rates):.3f}), "
            f"{100 * inside:.0f}% of {len(rates)} logged steps inside {BAND[0]}-{BAND[1]}")


def plot(run_dirs, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for d in run_dirs:
        steps, rates, _ = trace(d)
        ax.plot(steps, rates, label=Path(d).name, lw=1)
    ax.axhspan(*BAND, color="green", alpha=0.08, label="guidance band")
    ax.set_xlabel("step")
    ax.set_ylabel("train/win_rate (not clipped)")
    ax.set_ylim(0, max(0.6, ax.get_ylim()[1]))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", help="out_dirs of Sophia runs")
    p.add_argument("--plot", help="also draw the traces into this PNG")
    args = p.parse_args(argv)
    for d in args.run_dirs:
        print(summary(d))
    if args.plot:
        plot(args.run_dirs, args.plot)
        print(f"wrote {args.plot}")


def cli(argv=None):
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
