"""
The regime map's figure and table (scripts/regime.sh): per cell (a model size, a training length and
a batch size; one scripts/sweep.py per optimizer) and seed, both optimizers at their selected lr:
- Sophia-G's final val loss minus AdamW's;
- Sophia-G's steps to the loss both reach (the higher of the two final val losses) over AdamW's
  steps to it: the usual speedup where Sophia-G ends below AdamW, a ratio above 1 where it ends
  above (its own steps to its final loss over the steps AdamW took to get there);
against tokens per non-embedding parameter (cells of one size and batch: one curve per size) and
against the batch (cells of one size and token budget). Also each cell's epochs of the corpus and
its final val - train loss gap (repetition would widen it).

    python scripts/regime_plot.py out/regime/s1 out/regime/s4 ... --out out/regime/regime.png

Each directory is one cell: its sweep_summary.json and run directories, written by sweep.py.
"""
import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from errors import UserError, run_cli  # noqa: E402
from memory import parameter_counts  # noqa: E402
from scripts.runs import first_crossing, load_run  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def corpus_tokens(config):
    data_dir = Path(config["data_dir"]) if config["data_dir"] else REPO / "data" / config["dataset"]
    return (data_dir / "train.bin").stat().st_size // 2


def load_cell(cell_dir):
    """One cell: its shape, length, batch and, per seed, both optimizers' selected runs compared."""
    cell_dir = Path(cell_dir)
    try:
        summary = json.loads((cell_dir / "sweep_summary.json").read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{cell_dir}/sweep_summary.json is missing or unreadable ({e}): run the cell first") from None
    best = {name: sel["best_lr"] for name, sel in summary["selection"].items()}
    if set(best) != {"adamw", "sophiag"} or None in best.values():
        raise UserError(f"{cell_dir}: needs AdamW and Sophia-G each with a selected lr (sweep both to the end)")
    runs = {}
    for r in summary["runs"]:
        if r["lr"] == best[r["optimizer"]] and r["final_val_loss"] is not None:
            runs[(r["optimizer"], r["seed"])] = load_run(cell_dir / Path(r["dir"]).name)
    config = runs[("adamw", summary["seeds"][0])].config
    tokens = config["max_iters"] * config["total_batch_size"] * config["block_size"]
    shape = argparse.Namespace(**{k: config[k] for k in ("n_layer", "n_embd", "bias", "block_size")})
    params = config["n_layer"] * parameter_counts(shape, 0)[2]
    seeds = []
    for seed in summary["seeds"]:
        adamw, sophia = runs.get(("adamw", seed)), runs.get(("sophiag", seed))
        if adamw is None or sophia is None:
            continue
        common = max(adamw.final_val_loss, sophia.final_val_loss)
        last = {name: [r for r in run.evals][-1] for name, run in (("adamw", adamw), ("sophiag", sophia))}
        seeds.append({"seed": seed, "adamw": adamw.final_val_loss, "sophiag": sophia.final_val_loss,
                      "gap": sophia.final_val_loss - adamw.final_val_loss,
                      "ratio": first_crossing(sophia.rows, common) / first_crossing(adamw.rows, common),
                      "overfit": {k: e["val/loss"] - e["eval/train_loss"] for k, e in last.items()}})
    return {"cell": cell_dir.name, "n_layer": config["n_layer"], "n_embd": config["n_embd"], "params": params,
            "steps": config["max_iters"], "batch_tokens": config["total_batch_size"] * config["block_size"],
            "tokens_per_param": tokens / params, "epochs": tokens / corpus_tokens(config), "best_lr": best,
            "seeds": seeds}


def mean_spread(values, fmt="{:.3f}"):
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def table(cells):
    lines = ["| cell | model | tokens / param | batch (tokens) | steps | epochs | AdamW lr: final, per seed | "
             "Sophia-G lr: final, per seed | Sophia-G - AdamW | steps ratio | val - train |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in cells:
        seeds = c["seeds"]
        finals = {k: " / ".join(f"{s[k]:.4f}" for s in seeds) for k in ("adamw", "sophiag")}
        overfit = max(max(s["overfit"].values()) for s in seeds)
        lines.append(f"| {c['cell']} | {c['n_layer']} x {c['n_embd']} ({c['params'] / 1e6:.2f}M) | "
                     f"{c['tokens_per_param']:.0f} | {c['batch_tokens']:,} | {c['steps']:,} | {c['epochs']:.2f} | "
                     f"{c['best_lr']['adamw']:g}: {finals['adamw']} | {c['best_lr']['sophiag']:g}: {finals['sophiag']} | "
                     f"{mean_spread([s['gap'] for s in seeds], '{:+.3f}')} | "
                     f"{mean_spread([s['ratio'] for s in seeds], '{:.2f}')}x | {overfit:+.3f} |")
    return "\n".join(lines)


def series(cells, key, fixed):
    """Cells grouped by `fixed` (e.g. model and batch), each group sorted by `key`, groups of 2 or more."""
    groups = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in fixed), []).append(c)
    return {k: sorted(v, key=lambda c: c[key]) for k, v in groups.items() if len(v) > 1}


def plot(cells, out):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    axes_rows = [("tokens_per_param", ("n_embd", "batch_tokens"), "tokens per non-embedding parameter "
                  "(Chinchilla: 20)", lambda c: f"{c['n_layer']} x {c['n_embd']}, batch {c['batch_tokens']:,}"),
                 ("batch_tokens", ("n_embd", "tokens_per_param"), "tokens per step",
                  lambda c: f"{c['n_layer']} x {c['n_embd']}, {c['tokens_per_param']:.0f} tokens / param")]
    for (key, fixed, xlabel, name), (ax_gap, ax_ratio) in zip(axes_rows, axes):
        for i, group in enumerate(series(cells, key, fixed).values()):
            for ax, value in ((ax_gap, "gap"), (ax_ratio, "ratio")):
                x = [c[key] for c in group]
                ax.plot(x, [statistics.mean(s[value] for s in c["seeds"]) for c in group], "-o", color=f"C{i}",
                        label=name(group[0]))
                for c in group:
                    ax.scatter([c[key]] * len(c["seeds"]), [s[value] for s in c["seeds"]], color=f"C{i}", s=10)
        for ax in (ax_gap, ax_ratio):
            ax.set_xscale("log")
            ax.set_xlabel(xlabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax_gap.axhline(0.0, color="gray", ls="--", lw=1)
        ax_gap.set_ylabel("final val loss, Sophia-G - AdamW\n(below 0: Sophia-G better)")
        ax_ratio.axhline(1.0, color="gray", ls="--", lw=1)
        ax_ratio.set_ylabel("Sophia-G / AdamW steps to the\nhigher final val loss (below 1: faster)")
    fig.suptitle("Sophia-G against AdamW, each lr-tuned per cell (line: mean; dots: seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cells", nargs="+", help="one scripts/sweep.py --out directory per cell (both optimizers)")
    p.add_argument("--out", default="regime.png", help="the figure to write (and its table as .md, data as .json)")
    args = p.parse_args(argv)
    cells = [load_cell(d) for d in args.cells]
    text = table(cells)
    print(text)
    plot(cells, args.out)
    out = Path(args.out)
    out.with_suffix(".md").write_text(text + "\n")
    out.with_suffix(".json").write_text(json.dumps(cells, indent=2) + "\n")
    print(f"wrote {out}, {out.with_suffix('.md')} and {out.with_suffix('.json')}")


def cli(argv=None):
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
