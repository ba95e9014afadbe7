"""
The size ladder's figure and table (scripts/experiments/ladder.sh): per model size and seed, both optimizers at
their selected lr, against the model's non-embedding parameter count (GPT.num_params, which
train.py records in config.json as n_params):
- Sophia-G's steps to the loss both reach (the higher of the two final val losses), as a ratio to
  AdamW's steps to it. When Sophia-G ends below AdamW this is the usual speedup, its steps to
  AdamW's final loss over AdamW's; when it ends above, it is its own steps over the steps AdamW
  took to reach Sophia-G's final loss, a ratio above 1;
- Sophia-G's final val loss minus AdamW's.

    python scripts/experiments/ladder_plot.py out/ladder/s out/ladder/m out/ladder/l --out out/ladder/ladder.png

Each directory is one size's sweep (its sweep_summary.json, written by scripts/experiments/sweep.py).
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

from errors import UserError, run_cli
from runs import first_crossing, load_run


def load_size(sweep_dir: str) -> dict:
    """One size: its non-embedding parameter count and, per seed, Sophia-G's steps ratio and loss gap."""
    path = Path(sweep_dir) / "sweep_summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path} is missing or unreadable ({e}): run scripts/experiments/ladder.sh "
                        f"(or sweep.py) first") from None
    if summary["baseline"] != "adamw" or "sophiag" not in summary["speedup"]:
        raise UserError(f"{path} has no Sophia-G vs AdamW speedup: sweep both with --baseline adamw")
    config = json.loads((Path(sweep_dir) / Path(summary["runs"][0]["dir"]).name / "config.json").read_text())
    seeds = [{"seed": e["seed"], "steps_ratio": e["steps_ratio"], "reached": e["reached"],
              "gap": e["final_val_loss"] - e["target"],
              "common_ratio": common_loss_ratio(sweep_dir, summary, e["seed"])}
             for e in summary["speedup"]["sophiag"]["per_seed"]]
    lrs = {name: sel["best_lr"] for name, sel in summary["selection"].items()}
    return {"dir": str(sweep_dir), "n_layer": config["n_layer"], "n_embd": config["n_embd"],
            "non_embedding_params": config["n_params"], "best_lr": lrs, "seeds": seeds}


def common_loss_ratio(sweep_dir: str, summary: dict, seed: int) -> float:
    """Sophia-G's steps / AdamW's steps to the higher of their final val losses on `seed`."""
    runs = {r["optimizer"]: load_run(Path(sweep_dir) / Path(r["dir"]).name) for r in summary["runs"]
            if r["seed"] == seed and r["lr"] == summary["selection"][r["optimizer"]]["best_lr"]}
    adamw, sophia = runs["adamw"], runs["sophiag"]
    target = max(adamw.final_val_loss, sophia.final_val_loss)
    return first_crossing(sophia.rows, target) / first_crossing(adamw.rows, target)


def mean_spread(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def table(sizes: list[dict]) -> str:
    lines = ["| model | non-emb. params | AdamW lr | Sophia-G lr | Sophia-G steps to AdamW's final loss | "
             "Sophia-G / AdamW steps to the loss both reach | Sophia-G - AdamW final val loss |",
             "|---|---|---|---|---|---|---|"]
    for s in sizes:
        ratios = [e["steps_ratio"] for e in s["seeds"] if e["reached"]]
        missed = len(s["seeds"]) - len(ratios)
        ratio = mean_spread(ratios) + (f"x, not reached on {missed} of {len(s['seeds'])} seeds" if missed else "x")
        lines.append(f"| {s['n_layer']} x {s['n_embd']} | {s['non_embedding_params'] / 1e6:.2f}M | "
                     f"{s['best_lr']['adamw']:g} | {s['best_lr']['sophiag']:g} | "
                     f"{ratio if ratios else 'not reached'} | "
                     f"{mean_spread([e['common_ratio'] for e in s['seeds']])}x | "
                     f"{mean_spread([e['gap'] for e in s['seeds']])} |")
    return "\n".join(lines)


def plot(sizes: list[dict], out: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for s in sizes:
        x = s["non_embedding_params"]
        for e in s["seeds"]:
            ax1.scatter(x, e["common_ratio"], color="C0" if e["gap"] <= 0 else "C3")
            ax2.scatter(x, e["gap"], color="C0" if e["gap"] <= 0 else "C3")
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters")
        ax.grid(alpha=0.3)
    ax1.axhline(1.0, color="gray", ls="--", lw=1)
    ax1.set_ylabel("Sophia-G steps / AdamW steps\nto the higher final val loss")
    ax1.set_title("steps ratio (below 1: Sophia-G faster;\nred: Sophia-G ends above AdamW)")
    ax2.axhline(0.0, color="gray", ls="--", lw=1)
    ax2.set_ylabel("final val loss, Sophia-G - AdamW")
    ax2.set_title("final loss gap (below 0: Sophia-G better)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("sweep_dirs", nargs="+", help="one sweep.py --out directory per model size")
    p.add_argument("--out", default="ladder.png", help="the figure to write")
    args = p.parse_args(argv)
    sizes = sorted((load_size(d) for d in args.sweep_dirs), key=lambda s: s["non_embedding_params"])
    print(table(sizes))
    plot(sizes, args.out)
    Path(args.out).with_suffix(".json").write_text(json.dumps(sizes, indent=2) + "\n")
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.json')}")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
