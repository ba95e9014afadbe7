"""The regime map's and the size ladder's figure and table (docs/results.md): per cell (one model size, length and
batch: a sweep.py --out of regime.sh or ladder.sh) and seed, both optimizers at their selected lr, Sophia-G's final
val loss minus AdamW's and its steps to the loss both reach over AdamW's; a figure row varies one axis.

    python scripts/experiments/regime_plot.py out/regime/s1 out/regime/s4 ... --out out/regime/regime.png
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

import torch

from errors import UserError, run_cli
from model import GPT, config_from_dict
from provenance import REPO
from runs import first_crossing, load_run

# (axis, the keys held fixed along it, its label)
AXES = (
    ("params", ("steps", "batch_tokens"), "non-embedding parameters"),
    ("tokens_per_param", ("params", "batch_tokens"), "tokens per non-embedding parameter (Chinchilla: 20)"),
    ("batch_tokens", ("params", "tokens"), "tokens per step"),
)


def load_cell(cell_dir: str) -> dict:
    """One cell: its shape, length, batch and, per seed, both optimizers' selected runs compared."""
    path = Path(cell_dir) / "sweep_summary.json"
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        fix = "run the cell's sweeps first (scripts/experiments/regime.sh or ladder.sh)"
        raise UserError(f"{path} is missing or unreadable ({e}): {fix}") from None
    best = {name: sel["best_lr"] for name, sel in summary["selection"].items()}
    if set(best) != {"adamw", "sophiag"} or None in best.values():
        raise UserError(f"{path}: needs AdamW and Sophia-G each with a selected lr (sweep both to the end)")
    chosen = [r for r in summary["runs"] if r["lr"] == best[r["optimizer"]] and r.get("final_val_loss", 0) is not None]
    runs = {(r["optimizer"], r["seed"]): load_run(Path(cell_dir) / Path(r["dir"]).name) for r in chosen}
    seeds = []
    for (name, seed), adamw in sorted(runs.items()):
        sophia = runs.get(("sophiag", seed))
        if name != "adamw" or sophia is None:
            continue
        common = max(adamw.final_val_loss, sophia.final_val_loss)
        reach = first_crossing(sophia.rows, adamw.final_val_loss)
        gap = sophia.final_val_loss - adamw.final_val_loss
        ratio = first_crossing(sophia.rows, common) / first_crossing(adamw.rows, common)
        to_adamw = None if reach is None else reach / first_crossing(adamw.rows, adamw.final_val_loss)
        overfit = max(run.evals[-1]["val/loss"] - run.evals[-1]["eval/train_loss"] for run in (adamw, sophia))
        finals = {"adamw": adamw.final_val_loss, "sophiag": sophia.final_val_loss}
        seeds.append({"seed": seed, **finals, "gap": gap, "ratio": ratio, "to_adamw": to_adamw, "overfit": overfit})
    if not seeds:
        raise UserError(f"{path}: no seed has both optimizers' selected runs finished")
    config = runs[("adamw", seeds[0]["seed"])].config
    with torch.device("meta"):  # the run's shape only, no memory
        params = GPT(config_from_dict({**config, "vocab_size": 1, "block_size": 1})).num_params(non_embedding=True)
    batch_tokens = config["total_batch_size"] * config["block_size"]
    data_dir = Path(config["data_dir"]) if config.get("data_dir") else REPO / "data" / config.get("dataset", "")
    tokens, corpus_bin = config["max_iters"] * batch_tokens, data_dir / "train.bin"
    corpus = corpus_bin.stat().st_size // 2 if corpus_bin.is_file() else None
    cell = {"cell": Path(cell_dir).name, "n_layer": config["n_layer"], "n_embd": config["n_embd"], "params": params}
    cell |= dict(steps=config["max_iters"], batch_tokens=batch_tokens, tokens=tokens, tokens_per_param=tokens / params)
    return cell | {"epochs": corpus and tokens / corpus, "best_lr": best, "seeds": seeds}


def mean_spread(values: list[float], fmt: str = "{:.3f}") -> str:
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.mean(values))} ({fmt.format(min(values))} to {fmt.format(max(values))})"


def table(cells: list[dict]) -> str:
    head = "| cell | model | tokens / param | tokens / step | steps | epochs | AdamW lr: final val loss per seed | "
    head += "Sophia-G lr: final val loss per seed | Sophia-G - AdamW | Sophia-G / AdamW steps to the loss both reach | "
    lines = [head + "Sophia-G / AdamW steps to AdamW's final loss | val - train |", "|---" * 12 + "|"]
    for c in cells:
        seeds = c["seeds"]
        finals = {k: " / ".join(f"{s[k]:.4f}" for s in seeds) for k in ("adamw", "sophiag")}
        reached = [s["to_adamw"] for s in seeds if s["to_adamw"] is not None]
        to_adamw = mean_spread(reached, "{:.2f}") + "x" if reached else "not reached"
        if reached and len(reached) < len(seeds):
            to_adamw += f" ({len(seeds) - len(reached)} of {len(seeds)} seeds not)"
        lines.append(
            f"| {c['cell']} | {c['n_layer']} x {c['n_embd']} ({c['params'] / 1e6:.2f}M) | "
            f"{c['tokens_per_param']:.0f} | {c['batch_tokens']:,} | {c['steps']:,} | "
            f"{'-' if c['epochs'] is None else format(c['epochs'], '.2f')} | "
            f"{c['best_lr']['adamw']:g}: {finals['adamw']} | {c['best_lr']['sophiag']:g}: {finals['sophiag']} | "
            f"{mean_spread([s['gap'] for s in seeds], '{:+.3f}')} | "
            f"{mean_spread([s['ratio'] for s in seeds], '{:.2f}')}x | {to_adamw} | "
            f"{max(s['overfit'] for s in seeds):+.3f} |"
        )
    return "\n".join(lines)


def series(cells: list[dict], axis: str, fixed: tuple[str, ...]) -> list[list[dict]]:
    """Cells that differ along `axis` only (the `fixed` keys equal), sorted along it; groups of 2 or more."""
    groups: dict[tuple, list[dict]] = {}
    for c in cells:
        groups.setdefault(tuple(c[k] for k in fixed), []).append(c)
    return [sorted(g, key=lambda c: c[axis]) for g in groups.values() if len({c[axis] for c in g}) > 1]


def describe(cell: dict, fixed: tuple[str, ...]) -> str:
    names = {"params": f"{cell['n_layer']} x {cell['n_embd']}", "steps": f"{cell['steps']:,} steps"}
    names |= {"batch_tokens": f"{cell['batch_tokens']:,} tokens/step", "tokens": f"{cell['tokens'] / 1e6:.1f}M tokens"}
    return ", ".join(names[k] for k in fixed)


def plot(cells: list[dict], out: Path) -> None:
    from matplotlib.figure import Figure
    from matplotlib.ticker import NullFormatter

    rows = [(axis, fixed, label, series(cells, axis, fixed)) for axis, fixed, label in AXES]
    rows = [row for row in rows if row[3]]
    if not rows:
        raise UserError("no two cells differ in one axis only (size, tokens per parameter or batch): nothing to draw")
    fig = Figure(figsize=(11, 4 * len(rows)))
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for (axis, fixed, label, groups), (ax_gap, ax_ratio) in zip(rows, axes):
        for i, group in enumerate(groups):
            for ax, value in ((ax_gap, "gap"), (ax_ratio, "ratio")):
                means = [statistics.mean(s[value] for s in c["seeds"]) for c in group]
                ax.plot([c[axis] for c in group], means, "-o", color=f"C{i}", label=describe(group[0], fixed))
                for c in group:
                    ax.scatter([c[axis]] * len(c["seeds"]), [s[value] for s in c["seeds"]], color=f"C{i}", s=10)
        for ax in (ax_gap, ax_ratio):
            ax.set(xscale="log", xlabel=label)
            ticks = sorted({c[axis] for group in groups for c in group})  # labelled at the cells measured
            ax.set_xticks(ticks, [f"{v:,.0f}" if v >= 100 else f"{v:.3g}" for v in ticks])
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        ax_gap.axhline(0.0, color="gray", ls="--", lw=1)
        ax_gap.set_ylabel("final val loss, Sophia-G - AdamW\n(below 0: Sophia-G better)")
        ax_ratio.axhline(1.0, color="gray", ls="--", lw=1)
        ax_ratio.set_ylabel("Sophia-G / AdamW steps to the\nhigher final val loss (below 1: faster)")
    fig.suptitle("Sophia-G against AdamW, each lr-tuned per cell (line: mean over seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("cells", nargs="+", help="one cell's directory: both optimizers' sweeps (sweep.py)")
    p.add_argument("--out", type=Path, default="regime.png", help="the figure; its table and data go to .md and .json")
    args = p.parse_args(argv)
    cells = [load_cell(d) for d in args.cells]
    text = table(cells)
    print(text)
    plot(cells, args.out)
    args.out.with_suffix(".md").write_text(text + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(cells, indent=2) + "\n")
    print(f"wrote {args.out}, {args.out.with_suffix('.md')} and {args.out.with_suffix('.json')}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
