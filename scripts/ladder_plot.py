"""
The size ladder's figure and table (scripts/ladder.sh): per model size, Sophia-G's steps to reach
AdamW's final val loss as a ratio to AdamW's steps (each seed, both at their selected lr), and
Sophia-G's final val loss minus AdamW's, against the non-embedding parameter count.

    python scripts/ladder_plot.py out/ladder/s out/ladder/m out/ladder/l --out out/ladder/ladder.png

Each directory is one size's sweep (its sweep_summary.json, written by scripts/sweep.py).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from errors import UserError, run_cli  # noqa: E402
from memory import parameter_counts  # noqa: E402


def load_size(sweep_dir):
    """One size: its non-embedding parameter count and, per seed, Sophia-G's steps ratio and loss gap."""
    path = Path(sweep_dir) / "sweep_summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is missing or unreadable ({e}): run scripts/ladder.sh (or sweep.py) first") from None
    if summary["baseline"] != "adamw" or "sophiag" not in summary["speedup"]:
        raise UserError(f"{path} has no Sophia-G vs AdamW speedup: sweep both with --baseline adamw")
    config = json.loads((Path(summary["runs"][0]["dir"]) / "config.json").read_text())
    shape = argparse.Namespace(**{k: config[k] for k in ("n_layer", "n_embd", "bias", "block_size")})
    blocks = config["n_layer"] * parameter_counts(shape, 0)[2]
    seeds = [{"seed": e["seed"], "steps_ratio": e["steps_ratio"], "reached": e["reached"],
              "gap": e["final_val_loss"] - e["target"]}
             for e in summary["speedup"]["sophiag"]["per_seed"]]
    lrs = {name: sel["best_lr"] for name, sel in summary["selection"].items()}
    return {"dir": str(sweep_dir), "n_layer": config["n_layer"], "n_embd": config["n_embd"],
            "non_embedding_params": blocks, "best_lr": lrs, "seeds": seeds}


def mean_spread(values):
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def table(sizes):
    lines = ["| model | non-emb. params | AdamW lr | Sophia-G lr | Sophia-G steps to AdamW's final loss | "
             "Sophia-G - AdamW final val loss |", "|---|---|---|---|---|---|"]
    for s in sizes:
        ratios = [e["steps_ratio"] for e in s["seeds"] if e["reached"]]
        missed = len(s["seeds"]) - len(ratios)
        ratio = mean_spread(ratios) + (f"x, not reached on {missed} of {len(s['seeds'])} seeds" if missed else "x")
        lines.append(f"| {s['n_layer']} x {s['n_embd']} | {s['non_embedding_params'] / 1e6:.2f}M | "
                     f"{s['best_lr']['adamw']:g} | {s['best_lr']['sophiag']:g} | {ratio if ratios else 'not reached'} | "
                     f"{mean_spread([e['gap'] for e in s['seeds']])} |")
    return "\n".join(lines)


def plot(sizes, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in sizes:
        x = s["non_embedding_params"]
        for e in s["seeds"]:
            if e["reached"]:
                ax1.scatter(x, e["steps_ratio"], color="C0")
            else:
                ax1.scatter(x, 1.05, marker="^", color="C3")
            ax2.scatter(x, e["gap"], color="C0")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters")
        ax.grid(alpha=0.3)
    ax1.axhline(1.0, color="gray", ls="--", lw=1)
    ax1.set_ylabel("Sophia-G steps / AdamW steps\nto AdamW's final val loss")
    ax1.set_title("speedup (below 1: Sophia-G faster;\nred triangles: not reached)")
    ax2.axhline(0.0, color="gray", ls="--", lw=1)
    ax2.set_ylabel("final val loss, Sophia-G - AdamW")
    ax2.set_title("final loss gap (below 0: Sophia-G better)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", nargs="+", help="one sweep.py --out directory per model size")
    p.add_argument("--out", default="ladder.png", help="the figure to write")
    args = p.parse_args(argv)
    sizes = sorted((load_size(d) for d in args.sweep_dirs), key=lambda s: s["non_embedding_params"])
    print(table(sizes))
    plot(sizes, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(sizes, indent=2) + "\n")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")


def cli(argv=None):
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
