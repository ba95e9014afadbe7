"""Training runs read back for scripts/experiments/compare.py, sweep.py and regime_plot.py: Reach, tables, figure."""

import json
import math
import statistics
from dataclasses import asdict, astuple, dataclass
from pathlib import Path
from typing import Any

from errors import UserError
from metrics import read_metrics

X_KEYS = ("iter", "tokens_seen", "time_s")  # every metrics row carries these three x-axes
VALUE_KEYS = ("val/loss", "train/loss", "train/win_rate")  # the y-values we plot
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # wandb's spelling


@dataclass
class RunRecord:
    label: str
    source: str  # run directory, or "wandb:entity/project/run_id"
    config: dict  # config.json: train.py's settings, the derived values and the provenance
    rows: list[dict]  # metrics.jsonl rows in logging order, iter non-decreasing

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.rows if "val/loss" in r]

    @property
    def final_val_loss(self) -> float | None:
        return self.last_logged("val/loss")

    def last_logged(self, key: str) -> Any:
        return next((r[key] for r in reversed(self.rows) if r.get(key) is not None), None)

    @property
    def last_iter(self) -> int:
        return self.rows[-1]["iter"] if self.rows else 0

    @property
    def max_iters(self) -> int | None:
        return self.config["max_iters"] if isinstance(self.config.get("max_iters"), int) else None

    @property
    def finished(self) -> bool:
        """Its final eval, at max_iters, is logged (a run of unknown max_iters: any eval)."""
        return bool(self.evals) and (self.max_iters is None or self.evals[-1]["iter"] >= self.max_iters)

    @property
    def incomplete(self) -> bool:
        return self.max_iters is not None and not self.finished

    @property
    def commit(self) -> str:
        provenance = self.config.get("provenance") or {}
        return (provenance.get("git_commit") or "unknown") + ("+dirty" if provenance.get("git_dirty") else "")


def clean_rows(rows: list[dict], where: str) -> list[dict]:
    """Check the metrics contract, turn plotted values into floats, drop rows a resume re-did."""
    kept: list[dict] = []
    for i, row in enumerate(rows):
        row = dict(row)
        missing = [k for k in X_KEYS if k not in row]
        if missing:
            need = f"every metrics row needs {list(X_KEYS)} (write it with train.py)"
            raise UserError(f"{where}: row {i + 1} lacks {missing}; {need}")
        for key in VALUE_KEYS:
            if key in row:
                row[key] = math.nan if row[key] is None else float(NON_FINITE.get(row[key], row[key]))
        # a run resumed from a checkpoint at iter N logs iters >= N again: keep the newer rows
        kept = [r for r in kept if r["iter"] < row["iter"]] if kept and row["iter"] < kept[-1]["iter"] else kept
        kept.append(row)
    return kept


def default_label(config: dict, fallback: str) -> str:
    if "optimizer_name" not in config:
        return fallback
    return f"{config['optimizer_name']} lr={fmt_lr(config.get('learning_rate', '?'))} seed={config.get('seed', '?')}"


def load_run(path: str | Path, label: str | None = None) -> RunRecord:
    run_dir = Path(path)
    for name in ("metrics.jsonl", "config.json"):
        if not (run_dir / name).is_file():
            fix = "pass a train.py out_dir (train.py writes config.json and metrics.jsonl there)"
            raise UserError(f"{run_dir / name} not found: {fix}")
    config = json.loads((run_dir / "config.json").read_text())
    if not isinstance(config, dict):
        raise UserError(f"{run_dir / 'config.json'} must hold a JSON object (train.py's config)")
    rows = clean_rows(read_metrics(run_dir / "metrics.jsonl"), str(run_dir / "metrics.jsonl"))
    return RunRecord(label or default_label(config, run_dir.name), str(run_dir), config, rows)


def first_crossing(rows: list[dict], target: float, x_key: str = "iter") -> float | None:
    """x_key value where val/loss first reaches <= target (None: never), linearly interpolated from the eval before."""
    prev = None
    for row in rows:
        if "val/loss" not in row:
            continue
        loss = row["val/loss"]
        if loss <= target:
            if prev is None or not math.isfinite(prev["val/loss"]):
                return float(row[x_key])
            frac = (prev["val/loss"] - target) / (prev["val/loss"] - loss)
            return prev[x_key] + frac * (row[x_key] - prev[x_key])
        prev = row
    return None


@dataclass
class Reach:  # steps, tokens seen and training seconds to first reach a target val loss (None: never), or their ratios
    steps: float | None = None
    tokens: float | None = None
    seconds: float | None = None

    @classmethod
    def of(cls, run: RunRecord, target: float) -> "Reach":
        return cls(*(first_crossing(run.rows, target, key) for key in X_KEYS))

    def ratio(self, base: "Reach") -> "Reach":
        """self / base per unit; None where either is None or the baseline was there at x=0."""
        return Reach(*(x / b if x is not None and b else None for x, b in zip(astuple(self), astuple(base))))

    def columns(self, pattern: str) -> dict:
        """The flat keys of the CSV and JSON outputs: columns("{}_ratio") -> {"steps_ratio": ..., ...}."""
        return {pattern.format(unit): x for unit, x in asdict(self).items()}


@dataclass
class Comparison:  # one run against the target (the baseline's final val loss)
    run: RunRecord
    target: float
    reach: Reach  # steps / tokens / seconds to first reach the target
    ratio: Reach  # reach as a ratio to the baseline's (lower = faster)
    is_baseline: bool

    @property
    def reached(self) -> bool:
        return self.reach.steps is not None

    @property
    def diverged(self) -> bool:
        final = self.run.final_val_loss
        return final is not None and not math.isfinite(final)

    def flat(self) -> dict:
        """One row of the CSV and JSON outputs."""
        run = self.run
        row = dict(label=run.label, source=run.source, optimizer=run.config.get("optimizer_name"))
        row |= dict(baseline=self.is_baseline, iters=run.last_iter, max_iters=run.max_iters, incomplete=run.incomplete)
        row |= dict(evals=len(run.evals), final_val_loss=run.final_val_loss, diverged=self.diverged, target=self.target)
        row["commit"] = run.commit
        row |= {k: run.last_logged(f"eval/{k}") for k in ("hellaswag_acc", "hellaswag_acc_norm")}
        return row | self.reach.columns("{}_to_target") | self.ratio.columns("{}_ratio") | {"reached": self.reached}


def summarize(runs: list[RunRecord], baseline: RunRecord) -> list[Comparison]:
    """Each run's steps / tokens / seconds to first reach the baseline's final val loss, and their ratios."""
    target = baseline.final_val_loss
    if target is None or not math.isfinite(target):
        problem = "has no val/loss rows yet" if target is None else f"ended with val loss {target}"
        fix = "so there is no target; pick another run with --baseline"
        raise UserError(f"baseline {baseline.label!r} {problem}, {fix}")
    base = Reach.of(baseline, target)
    return [Comparison(r, target, Reach.of(r, target), Reach.of(r, target).ratio(base), r is baseline) for r in runs]


def speedup(baselines: dict[int, RunRecord], runs: dict[int, RunRecord]) -> dict:
    """Per seed with both runs: each one's Reach to the baseline's final val loss, their ratio; the ratios' stats."""
    per_seed = []
    for seed, base in baselines.items():
        target = base.final_val_loss
        if seed in runs and target is not None:
            run, base_reach = runs[seed], Reach.of(base, target)
            reach = Reach.of(run, target)
            entry = dict(seed=seed, target=target, final_val_loss=run.final_val_loss, reached=reach.steps is not None)
            per_seed.append(entry | dict(to_target=reach, baseline_to_target=base_reach, ratio=reach.ratio(base_reach)))
    stats: dict[str, dict | None] = {}
    for unit in FORMATS:
        x = [getattr(e["ratio"], unit) for e in per_seed if getattr(e["ratio"], unit) is not None]
        std = statistics.stdev(x) if len(x) > 1 else None
        stats[unit] = {"n": len(x), "mean": statistics.mean(x), "min": min(x), "max": max(x), "std": std} if x else None
    missed = [e["seed"] for e in per_seed if not e["reached"]]
    return {"per_seed": per_seed, "stats": stats, "not_reached_seeds": missed}


def format_speedup(result: dict, name: str, baseline: str, seeds: list[int]) -> str:
    """speedup()'s result as text: a row per seed, what was not reached, and the ratios' spread."""
    rows = [["seed", "target", f"{name} final", *FORMATS]]
    for e in result["per_seed"]:
        cells = [str(e["seed"]), fmt_loss(e["target"]), fmt_loss(e["final_val_loss"])]
        for unit, fmt in FORMATS.items():
            x, base_x, ratio = (getattr(e[key], unit) for key in ("to_target", "baseline_to_target", "ratio"))
            cells.append("not reached" if x is None else f"{fmt(x)} vs {fmt(base_x)} = {fmt_ratio(ratio)}")
        rows.append(cells)
    lines = [table(rows)]
    missed, n = result["not_reached_seeds"], len(result["per_seed"])
    if missed:
        lines.append(f"NOT REACHED for seed {join(missed)}: {name} ended above {baseline}'s final val loss there")
    absent = [s for s in seeds if s not in {e["seed"] for e in result["per_seed"]}]
    if absent:
        lines.append(f"seed {join(absent)}: no finished run of both yet")
    over = f"over the {n - len(missed)} of {n} seeds that reached it" if missed else f"over {n} seeds"
    lines.append(f"{name} / {baseline} ratio, {over} (lower = faster):")
    for unit, st in result["stats"].items():
        if st is None:
            lines.append(f"  {unit:<8}not reached")
            continue
        std = "n/a (1 seed)" if st["std"] is None else f"{st['std']:.2f}"
        note = "  (training wall-clock, eval excluded)" if unit == "seconds" else ""
        lines.append(f"  {unit:<8}mean {st['mean']:.2f}x  min-max {st['min']:.2f}x-{st['max']:.2f}x  std {std}{note}")
    return "\n".join(lines)


def join(values: list) -> str:
    return ", ".join(map(str, values))


def fmt_lr(lr: Any) -> str:
    if not isinstance(lr, (int, float)):
        return str(lr)
    mantissa, exponent = f"{lr:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def fmt_loss(x: float | None) -> str:
    return "-" if x is None else f"{x:.4f}"


def fmt_count(x: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_seconds(s: float) -> str:
    return f"{s / 3600:.2f}h" if s >= 7200 else f"{s / 60:.1f}min" if s >= 120 else f"{s:.1f}s"


def fmt_ratio(ratio: float | None) -> str:
    return "n/a" if ratio is None else f"{ratio:.2f}x"


FORMATS = {"steps": lambda x: f"{x:,.0f}" if x >= 100 else f"{x:.1f}", "tokens": fmt_count, "seconds": fmt_seconds}


def table(rows: list[list[str]]) -> str:
    """Rows of cells as plain text, each column left-aligned to its widest cell."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


# how a Reach under each key of speedup()'s entries is written into JSON
COLUMNS = {"to_target": "{}_to_target", "baseline_to_target": "baseline_{}_to_target", "ratio": "{}_ratio"}


def jsonable(value: Any) -> Any:
    """Non-finite floats become null (strict JSON; a status or flag says diverged), a Reach its COLUMNS."""
    if isinstance(value, dict):
        out: dict = {}
        for k, v in value.items():
            out.update(jsonable(v.columns(COLUMNS[k])) if isinstance(v, Reach) else {k: jsonable(v)})
        return out
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    return None if isinstance(value, float) and not math.isfinite(value) else value


def ema(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average; non-finite values pass through as NaN."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if math.isfinite(v):
            n += 1
            avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta**n) if math.isfinite(v) else math.nan)
    return out


def auto_smooth(runs: list[RunRecord]) -> float:
    """EMA coefficient whose window (~1/(1-beta) logged rows) is 2.5% of the longest run and at least
    3 rows, so the curve neither lags a 60-step CPU run nor stays noisy over 100k."""
    rows = max(sum("train/loss" in r for r in run.rows) for run in runs)
    return 1 - 1 / max(3.0, rows / 40)


def plot_runs(
    runs: list[RunRecord], baseline: RunRecord, summary: list[Comparison], out: str | Path, smooth: float | None = None
) -> Any:
    """The comparison figure (docs/sweep_and_compare.md), PNG `out`; smooth: train loss EMA beta (None: auto_smooth)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    target = summary[0].target
    smooth = auto_smooth(runs) if smooth is None else smooth
    max_s = max((r.rows[-1]["time_s"] for r in runs if r.rows), default=0.0)
    t_div, t_unit = (3600, "hours") if max_s >= 7200 else (60, "min") if max_s >= 120 else (1, "s")
    fig = Figure(figsize=(19, 10.5), layout="constrained")
    grid = fig.add_gridspec(2, 6)
    val_axes = [fig.add_subplot(grid[0, 2 * i : 2 * i + 2]) for i in range(3)]
    train_ax, win_ax = fig.add_subplot(grid[1, :3]), fig.add_subplot(grid[1, 3:])
    title = f"Target: val loss {target:.4f} = final val loss of baseline '{baseline.label}'"
    ratio = "ratio = run's steps / tokens / time to first reach it ÷ baseline's; lower is faster"
    fig.suptitle(f"{title}  ({ratio})", fontsize=13)

    def legend_label(run: RunRecord) -> str:
        if run is baseline:
            return f"{run.label} [baseline]"
        if run.final_val_loss is not None and not math.isfinite(run.final_val_loss):
            return f"{run.label} (diverged)"
        return f"{run.label} (incomplete {run.last_iter}/{run.max_iters})" if run.incomplete else run.label

    def finish(ax: Any, xlabel: str, ylabel: str, title: str, curves: list | None = None, line: str = "") -> None:
        if curves is not None:  # zoom to the target and each curve past its first 10% (the initial drop from ~10.8)
            ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4f}{line}")
            ys = [target]
            for xs, vals in curves:
                start = xs[0] + 0.1 * (xs[-1] - xs[0]) if xs else 0
                ys += [y for x, y in zip(xs, vals) if x >= start and math.isfinite(y)]
            pad = 0.05 * (max(ys) - min(ys)) or 0.05 * abs(max(ys)) or 0.1
            ax.set_ylim(min(ys) - pad, max(ys) + pad)
        ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)

    val_panels = [
        ("iter", "steps", 1, "steps (optimizer updates)", "val loss vs steps"),
        ("tokens_seen", "tokens", 1, "tokens seen (training + Hessian-estimate tokens)", "val loss vs tokens seen"),
        ("time_s", "seconds", t_div, f"training wall-clock ({t_unit}, eval time excluded)", "val loss vs wall-clock"),
    ]
    for ax, (key, unit, div, xlabel, title) in zip(val_axes, val_panels):
        curves = []
        for i, row in enumerate(summary):
            xs, ys = [r[key] / div for r in row.run.evals], [r["val/loss"] for r in row.run.evals]
            curves.append((xs, ys))
            lw, marker = 2.4 if row.is_baseline else 1.6, "." if len(xs) <= 60 else None
            ax.plot(xs, ys, color=f"C{i}", lw=lw, marker=marker, label=legend_label(row.run))
            if getattr(row.reach, unit) is not None:
                ax.plot([getattr(row.reach, unit) / div], [target], "o", ms=8, mfc="none", mec=f"C{i}", mew=2)
        finish(ax, xlabel, "val loss (nats/token)", f"{title}  (circles: first reach of target)", curves)
    val_axes[1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_count(x)))

    curves = []
    for i, run in enumerate(runs):
        train = [r for r in run.rows if "train/loss" in r]
        xs, raw = [r["iter"] for r in train], [r["train/loss"] for r in train]
        curves.append((xs, ema(raw, smooth)))
        train_ax.plot(xs, raw, color=f"C{i}", lw=0.6, alpha=0.25)
        train_ax.plot(xs, curves[-1][1], color=f"C{i}", lw=1.6, label=legend_label(run))
    title = f"train loss, bias-corrected EMA β={smooth:.3g} per logged row (faint: raw)"
    finish(train_ax, "steps (optimizer updates)", "train loss (nats/token)", title, curves, " (a val loss)")

    sophia = [(i, run) for i, run in enumerate(runs) if any("train/win_rate" in r for r in run.rows)]
    for i, run in sophia:
        rows = [r for r in run.rows if "train/win_rate" in r]
        xs, ys = [r["iter"] for r in rows], [r["train/win_rate"] for r in rows]
        win_ax.plot(xs, ys, color=f"C{i}", lw=1.4, label=legend_label(run))
    win_ax.axhspan(0.1, 0.5, color="g", alpha=0.08, label="healthy range 0.1-0.5")
    win_ax.set_ylim(0, 1)
    if not sophia:
        note = "no Sophia runs\n(no train/win_rate logged)"
        win_ax.text(0.5, 0.5, note, ha="center", va="center", transform=win_ax.transAxes, fontsize=12, color="0.4")
    title = "Sophia win_rate: fraction of coordinates not clipped"
    finish(win_ax, "steps (optimizer updates)", "win_rate (fraction)", title)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fig
