"""
Compare training runs: loss curves, and how fast each run reaches the baseline's final val loss.

Reads train.py out_dirs (metrics.jsonl + config.json) or runs of a wandb project, then
  1. draws one PNG: val loss against steps, against tokens seen (Hessian-estimate tokens
     included) and against training wall-clock; EMA-smoothed train loss against steps; and
     Sophia's win_rate against steps;
  2. prints a table: each run's final val loss and the steps / tokens / seconds it needed to
     FIRST reach the target (the baseline's final val loss), each as a ratio to the
     baseline's own (0.50x = needed half as many as the baseline).

A crossing is linearly interpolated between the last eval above the target and the first eval
at or below it (an eval exactly at the target counts as reached). A run that never gets there
is reported as "not reached", never as a number.

    python scripts/compare.py out/adamw out/sophiag --out compare.png
    python scripts/compare.py out/* --baseline "adamw lr=6e-4 seed=0" --csv table.csv
    python scripts/compare.py --wandb my-team/sophia --runs adamw-125m sophiag-125m

Reusable pieces (e.g. for a sweep): load_run, first_crossing, pick_baseline, summarize,
format_table, plot_runs, rows_from_wandb_history, load_wandb_runs.
"""
import argparse
import csv
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

X_KEYS = ("iter", "tokens_seen", "time_s")  # every metrics row carries these three x-axes
X_NAMES = {"iter": "steps", "tokens_seen": "tokens", "time_s": "seconds"}  # summary columns
VALUE_KEYS = ("val/loss", "train/loss", "train/win_rate")  # the y-values we plot
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}  # wandb's spelling


@dataclass
class Run:
    label: str
    source: str  # run directory, or "wandb:entity/project/run_id"
    config: dict
    rows: list[dict]  # metrics.jsonl rows in logging order, iter non-decreasing

    @property
    def evals(self) -> list[dict]:
        return [r for r in self.rows if "val/loss" in r]

    @property
    def final_val_loss(self) -> float | None:
        evals = self.evals
        return evals[-1]["val/loss"] if evals else None

    @property
    def last_iter(self) -> int:
        return self.rows[-1]["iter"] if self.rows else 0

    @property
    def incomplete(self) -> bool:
        max_iters = self.config.get("max_iters")
        return isinstance(max_iters, int) and self.last_iter < max_iters


# -----------------------------------------------------------------------------
# loading

def clean_rows(rows: list[dict], where: str) -> list[dict]:
    """Check the metrics contract, turn plotted values into floats, drop rows a resume re-did."""
    kept = []
    for i, row in enumerate(rows):
        row = dict(row)
        missing = [k for k in X_KEYS if k not in row]
        if missing:
            raise ValueError(f"{where}: row {i + 1} lacks {missing}; every metrics row needs "
                             f"{list(X_KEYS)} (write it with train.py)")
        for key in VALUE_KEYS:
            if key in row:
                value = row[key]
                row[key] = math.nan if value is None else float(NON_FINITE.get(value, value))
        # a run resumed from a checkpoint at iter N logs iters >= N again: keep the newer rows
        if kept and row["iter"] < kept[-1]["iter"]:
            kept = [r for r in kept if r["iter"] < row["iter"]]
        kept.append(row)
    return kept


def read_metrics(path: Path) -> list[dict]:
    """Parse metrics.jsonl. A half-written last line (a run still writing) is ignored."""
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            if lineno == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"{path}:{lineno}: not valid JSON ({e.msg}); fix or delete that line")
    return rows


def fmt_lr(lr) -> str:
    if not isinstance(lr, (int, float)):
        return str(lr)
    mantissa, exponent = f"{lr:.3e}".split("e")
    return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"


def default_label(config: dict, fallback: str) -> str:
    if "optimizer_name" not in config:
        return fallback
    return (f"{config['optimizer_name']} lr={fmt_lr(config.get('learning_rate', '?'))} "
            f"seed={config.get('seed', '?')}")


def load_run(path, label: str | None = None) -> Run:
    """Load one train.py out_dir (metrics.jsonl + config.json)."""
    run_dir = Path(path)
    for name in ("metrics.jsonl", "config.json"):
        if not (run_dir / name).is_file():
            raise ValueError(f"{run_dir / name} not found: pass a train.py out_dir (train.py "
                             f"writes config.json and metrics.jsonl there)")
    config = json.loads((run_dir / "config.json").read_text())
    if not isinstance(config, dict):
        raise ValueError(f"{run_dir / 'config.json'} must hold a JSON object (train.py's config)")
    rows = clean_rows(read_metrics(run_dir / "metrics.jsonl"), str(run_dir / "metrics.jsonl"))
    return Run(label or default_label(config, run_dir.name), str(run_dir), config, rows)


def rows_from_wandb_history(history) -> list[dict]:
    """wandb history rows (Run.scan_history()) -> metrics.jsonl rows.

    scan_history rows hold only the keys logged at that step, plus wandb's own (_step,
    _runtime, _timestamp), which are dropped. A None value was logged as null (train.py logs
    non-finite values so) and wandb spells non-finite floats "NaN" / "Infinity" / "-Infinity":
    clean_rows reads all of these as NaN/inf. Rows without "iter" come from other wandb.log
    calls and are dropped.
    """
    rows, seen = [], 0
    for raw in history:
        seen += 1
        row = {k: v for k, v in raw.items() if not k.startswith("_")}
        if "iter" in row:
            rows.append(row)
    if seen and not rows:
        raise ValueError("wandb history has no 'iter' key: log train.py's metrics rows "
                         "(wandb_log=True) so the history holds iter, tokens_seen, time_s")
    return rows


def load_wandb_runs(project: str, refs: list[str] | None = None) -> list[Run]:
    """Load runs of a wandb project ("entity/project"); refs are run ids or display names
    (all runs of the project, oldest first, when refs is empty)."""
    if project.count("/") != 1:
        raise ValueError(f"--wandb {project!r}: expected ENTITY/PROJECT, e.g. my-team/sophia")
    try:
        import wandb
    except ImportError as e:
        raise ValueError("--wandb needs the wandb package: pip install wandb") from e
    try:
        api = wandb.Api(timeout=60)
        if refs:
            found = []
            for ref in refs:
                matches = list(api.runs(project, filters={"$or": [{"name": ref},
                                                                  {"display_name": ref}]}))
                if len(matches) != 1:
                    raise ValueError(f"{len(matches)} runs in wandb project {project} have id or "
                                     f"name {ref!r}; pass one run id per --runs value")
                found.extend(matches)
        else:
            found = list(api.runs(project))
            if not found:
                raise ValueError(f"wandb project {project} has no runs; check ENTITY/PROJECT")
        runs = []
        for r in found:
            source = f"wandb:{project}/{r.id}"
            config = dict(r.config)
            rows = clean_rows(rows_from_wandb_history(r.scan_history()), source)
            runs.append(Run(default_label(config, r.name), source, config, rows))
        return runs
    except wandb.errors.Error as e:
        raise ValueError(f"could not read wandb project {project}: {e} -- run `wandb login` (or "
                         f"set WANDB_API_KEY) on a machine with network access, or pass local "
                         f"RUN_DIRs instead") from e


def dedupe_labels(runs: list[Run]) -> None:
    """Runs with the same label (same optimizer, lr and seed) get their source appended."""
    counts = Counter(run.label for run in runs)
    for run in runs:
        if counts[run.label] > 1:
            run.label = f"{run.label} ({Path(run.source).name})"


# -----------------------------------------------------------------------------
# the speedup-to-target numbers

def first_crossing(rows: list[dict], target: float, x_key: str = "iter") -> float | None:
    """x_key value at which val/loss first reaches <= target, None if it never does.

    Between the last eval above the target and the first eval at or below it, x is linearly
    interpolated in loss. When the eval before the crossing is NaN/inf there is nothing to
    interpolate from, so the crossing eval's own x is returned (an upper bound).
    """
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


def pick_baseline(runs: list[Run], choice: str | None = None) -> tuple[Run, str]:
    """The baseline run and why it was chosen. choice: a label, run dir, dir name or wandb id."""
    if choice is None:
        for run in runs:
            if run.config.get("optimizer_name") == "adamw":
                return run, "the first run with optimizer_name='adamw'"
        return runs[0], "the first run; no run has optimizer_name='adamw'"
    matches = [r for r in runs if choice in (r.label, r.source, Path(r.source).name)
               or Path(choice).resolve() == Path(r.source).resolve()]
    if len(matches) != 1:
        labels = ", ".join(repr(r.label) for r in runs)
        raise ValueError(f"--baseline {choice!r} matches {len(matches)} runs; give one of the "
                         f"labels {labels} or a run dir")
    return matches[0], "--baseline"


def last_logged(rows: list[dict], key: str):
    """The last value of `key` in the rows, None if it was never logged."""
    values = [r[key] for r in rows if r.get(key) is not None]
    return values[-1] if values else None


def summarize(runs: list[Run], baseline: Run) -> list[dict]:
    """One flat dict per run: final val loss, the last HellaSwag accuracies (None if not logged)
    and the steps / tokens / seconds to first reach the baseline's final val loss, with ratios
    to the baseline's own (None = not reached)."""
    target = baseline.final_val_loss
    if target is None or not math.isfinite(target):
        problem = "has no val/loss rows yet" if target is None else f"ended with val loss {target}"
        raise ValueError(f"baseline {baseline.label!r} {problem}, so there is no target; "
                         f"pick another run with --baseline")
    base = {key: first_crossing(baseline.rows, target, key) for key in X_KEYS}
    summary = []
    for run in runs:
        final = run.final_val_loss
        row = {"label": run.label, "source": run.source,
               "optimizer": run.config.get("optimizer_name"), "baseline": run is baseline,
               "iters": run.last_iter, "max_iters": run.config.get("max_iters"),
               "incomplete": run.incomplete, "evals": len(run.evals), "final_val_loss": final,
               "diverged": final is not None and not math.isfinite(final), "target": target,
               "hellaswag_acc": last_logged(run.rows, "eval/hellaswag_acc"),
               "hellaswag_acc_norm": last_logged(run.rows, "eval/hellaswag_acc_norm")}
        for key in X_KEYS:
            x = first_crossing(run.rows, target, key)
            row[f"{X_NAMES[key]}_to_target"] = x
            # the baseline reaches its own target at x=0 only if its first eval was already there
            row[f"{X_NAMES[key]}_ratio"] = x / base[key] if x is not None and base[key] else None
        row["reached"] = row["steps_to_target"] is not None
        summary.append(row)
    return summary


# -----------------------------------------------------------------------------
# text output

def fmt_count(x: float) -> str:
    for div, suffix in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_seconds(s: float) -> str:
    if s >= 2 * 3600:
        return f"{s / 3600:.2f}h"
    if s >= 2 * 60:
        return f"{s / 60:.1f}min"
    return f"{s:.1f}s"


def fmt_steps(x: float) -> str:
    return f"{x:,.0f}" if x >= 100 else f"{x:.1f}"


FORMATS = {"steps": fmt_steps, "tokens": fmt_count, "seconds": fmt_seconds}


def note(row: dict) -> str:
    notes = ["baseline"] if row["baseline"] else []
    if row["incomplete"]:
        notes.append(f"incomplete ({row['iters']}/{row['max_iters']} iters)")
    if row["diverged"]:
        notes.append(f"diverged (final val loss {row['final_val_loss']})")
    if row["evals"] == 0:
        notes.append("no eval yet")
    return ", ".join(notes)


def format_table(summary: list[dict]) -> str:
    """Plain aligned text table of summarize()'s rows; a HellaSwag acc_norm column when a run
    logged it."""
    hellaswag = any(row.get("hellaswag_acc_norm") is not None for row in summary)
    header = ["run", "iters", "final val loss", *(["hellaswag acc_norm"] if hellaswag else []),
              "steps to target", "tokens to target", "time to target", "note"]
    lines = [header]
    for row in summary:
        iters = f"{row['iters']}/{row['max_iters']}" if row["max_iters"] else str(row["iters"])
        final = "-" if row["final_val_loss"] is None else f"{row['final_val_loss']:.4f}"
        cells = [row["label"], iters, final]
        if hellaswag:
            acc = row["hellaswag_acc_norm"]
            cells.append("-" if acc is None else f"{acc:.4f}")
        for name, fmt in FORMATS.items():
            x, ratio = row[f"{name}_to_target"], row[f"{name}_ratio"]
            if x is None:
                cells.append("not reached")
            else:
                cells.append(f"{fmt(x)} ({'n/a' if ratio is None else f'{ratio:.2f}x'})")
        cells.append(note(row))
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
                     for line in lines)


def write_csv(summary: list[dict], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0]))
        writer.writeheader()
        writer.writerows(summary)


def finite_or_none(value):
    return None if isinstance(value, float) and not math.isfinite(value) else value


def write_json(summary: list[dict], baseline: Run, path: Path) -> None:
    """JSON is strict (no NaN): a NaN final loss becomes null, with "diverged": true."""
    report = {"baseline": baseline.label, "target": summary[0]["target"],
              "crossing": "first eval at or below target, linearly interpolated from the "
                          "previous eval; ratio = run / baseline (lower = faster)",
              "runs": [{k: finite_or_none(v) for k, v in row.items()} for row in summary]}
    path.write_text(json.dumps(report, indent=2, allow_nan=False) + "\n")


# -----------------------------------------------------------------------------
# the figure

def ema(values: list[float], beta: float) -> list[float]:
    """Bias-corrected exponential moving average; non-finite values pass through as NaN."""
    out, avg, n = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(math.nan)
            continue
        n += 1
        avg = beta * avg + (1 - beta) * v
        out.append(avg / (1 - beta ** n))
    return out


def focus_ylim(ax, curves: list[tuple[list, list]], target: float) -> None:
    """Zoom the loss axis to the target and the part after the first 10% of each curve (the
    initial drop from ~10.8 would otherwise flatten everything that matters)."""
    ys = [target]
    for xs, vals in curves:
        if xs:
            start = xs[0] + 0.1 * (xs[-1] - xs[0])
            ys += [y for x, y in zip(xs, vals) if x >= start and math.isfinite(y)]
    lo, hi = min(ys), max(ys)
    pad = 0.05 * (hi - lo) or 0.05 * abs(hi) or 0.1
    ax.set_ylim(lo - pad, hi + pad)


def auto_smooth(runs: list[Run]) -> float:
    """EMA coefficient whose window (~1/(1-beta) logged rows) is 2.5% of the longest run and
    at least 3 rows, so the curve neither lags a 60-step CPU run nor stays noisy over 100k."""
    rows = max(sum("train/loss" in r for r in run.rows) for run in runs)
    return 1 - 1 / max(3.0, rows / 40)


def plot_runs(runs: list[Run], baseline: Run, summary: list[dict], out,
              smooth: float | None = None):
    """Draw the comparison figure into `out` (PNG) and return the matplotlib Figure.
    smooth: EMA coefficient per logged train row (None: auto_smooth)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    target = summary[0]["target"]
    smooth = auto_smooth(runs) if smooth is None else smooth
    max_s = max((r.rows[-1]["time_s"] for r in runs if r.rows), default=0.0)
    t_div, t_unit = (3600, "hours") if max_s >= 7200 else (60, "min") if max_s >= 120 else (1, "s")

    fig = Figure(figsize=(19, 10.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2, 3)
    fig.suptitle(f"Target: val loss {target:.4f} = final val loss of baseline "
                 f"'{baseline.label}'  (ratio = run's steps / tokens / time to first reach it "
                 f"÷ baseline's; lower is faster)", fontsize=13)

    def legend_label(run: Run) -> str:
        if run is baseline:
            return f"{run.label} [baseline]"
        if run.final_val_loss is not None and not math.isfinite(run.final_val_loss):
            return f"{run.label} (diverged)"
        if run.incomplete:
            return f"{run.label} (incomplete {run.last_iter}/{run.config['max_iters']})"
        return run.label

    val_panels = [
        (axes[0, 0], "iter", 1, "steps (optimizer updates)", "val loss vs steps"),
        (axes[0, 1], "tokens_seen", 1, "tokens seen (training + Hessian-estimate tokens)",
         "val loss vs tokens seen"),
        (axes[0, 2], "time_s", t_div, f"training wall-clock ({t_unit}, eval time excluded)",
         "val loss vs wall-clock"),
    ]
    for ax, key, div, xlabel, title in val_panels:
        curves = []
        for i, (run, row) in enumerate(zip(runs, summary)):
            evals = run.evals
            xs = [r[key] / div for r in evals]
            ys = [r["val/loss"] for r in evals]
            curves.append((xs, ys))
            ax.plot(xs, ys, color=f"C{i}", lw=2.4 if run is baseline else 1.6,
                    marker="." if len(xs) <= 60 else None, label=legend_label(run))
            x = row[f"{X_NAMES[key]}_to_target"]
            if x is not None:
                ax.plot([x / div], [target], "o", ms=8, mfc="none", mec=f"C{i}", mew=2)
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4f}")
        focus_ylim(ax, curves, target)
        ax.set(xlabel=xlabel, ylabel="val loss (nats/token)",
               title=f"{title}  (circles: first reach of target)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0, 1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_count(x)))

    ax = axes[1, 0]
    curves = []
    for i, run in enumerate(runs):
        train = [r for r in run.rows if "train/loss" in r]
        xs, raw = [r["iter"] for r in train], [r["train/loss"] for r in train]
        smoothed = ema(raw, smooth)
        curves.append((xs, smoothed))
        ax.plot(xs, raw, color=f"C{i}", lw=0.6, alpha=0.25)
        ax.plot(xs, smoothed, color=f"C{i}", lw=1.6, label=legend_label(run))
    ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4f} (a val loss)")
    focus_ylim(ax, curves, target)
    ax.set(xlabel="steps (optimizer updates)", ylabel="train loss (nats/token)",
           title=f"train loss, bias-corrected EMA β={smooth:.3g} per logged row (faint: raw)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1, 1]
    sophia = [(i, run) for i, run in enumerate(runs)
              if any("train/win_rate" in r for r in run.rows)]
    for i, run in sophia:
        rows = [r for r in run.rows if "train/win_rate" in r]
        ax.plot([r["iter"] for r in rows], [r["train/win_rate"] for r in rows], color=f"C{i}",
                lw=1.4, label=legend_label(run))
    ax.axhspan(0.1, 0.5, color="g", alpha=0.08, label="healthy range 0.1-0.5")
    ax.set(xlabel="steps (optimizer updates)", ylabel="win_rate (fraction)", ylim=(0, 1),
           title="Sophia win_rate: fraction of coordinates not clipped")
    if not sophia:
        ax.text(0.5, 0.5, "no Sophia runs\n(no train/win_rate logged)", ha="center",
                va="center", transform=ax.transAxes, fontsize=12, color="0.4")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)

    ax = axes[1, 2]
    ax.axis("off")
    lines = [f"{'run':<30} {'final val':>9}  {'steps':>11}  {'tokens':>11}  {'time':>11}"]
    for row in summary:
        cells = []
        for name in FORMATS:
            ratio = row[f"{name}_ratio"]
            cells.append("not reached" if row[f"{name}_to_target"] is None
                         else "n/a" if ratio is None else f"{ratio:.2f}x")
        final = "-" if row["final_val_loss"] is None else f"{row['final_val_loss']:.4f}"
        lines.append(f"{row['label'][:30]:<30} {final:>9}  " + "  ".join(f"{c:>11}" for c in cells))
    lines += ["", f"target: val loss {target:.4f}, the baseline's final val loss",
              "crossing: linear interpolation between evals", "full table: stdout / --csv / --json"]
    ax.text(0, 1, "\n".join(lines), family="monospace", fontsize=9, va="top",
            transform=ax.transAxes)
    ax.set_title("to reach the target, as a ratio to the baseline (lower = faster)")

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fig


# -----------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\nReusable")[0].strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="train.py out_dirs")
    p.add_argument("--baseline", help="label, run dir, dir name or wandb run id of the "
                   "baseline (default: the first adamw run, else the first run)")
    p.add_argument("--out", default="compare.png", help="PNG to write (default compare.png)")
    p.add_argument("--labels", nargs="+", help="one label per run, in order (after the RUN_DIRs)")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--json", help="also write the table as JSON here")
    p.add_argument("--smooth", type=float, help="EMA coefficient for train loss, per logged "
                   "row (default: a window of 2.5%% of the longest run, >= 3 rows)")
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from this wandb project")
    p.add_argument("--runs", nargs="+", help="with --wandb: run ids or display names "
                   "(default: all runs of the project)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if not args.run_dirs and not args.wandb:
            raise ValueError("nothing to compare: give RUN_DIRs (train.py out_dirs) or "
                             "--wandb ENTITY/PROJECT")
        if args.runs and not args.wandb:
            raise ValueError("--runs selects wandb runs: add --wandb ENTITY/PROJECT")
        if args.smooth is not None and not 0 <= args.smooth < 1:
            raise ValueError(f"--smooth {args.smooth}: the EMA coefficient must be in [0, 1)")
        runs = [load_run(d) for d in args.run_dirs]
        if args.wandb:
            runs += load_wandb_runs(args.wandb, args.runs)
        if args.labels:
            if len(args.labels) != len(runs):
                raise ValueError(f"got {len(args.labels)} --labels for {len(runs)} runs; "
                                 f"give one label per run")
            for run, label in zip(runs, args.labels):
                run.label = label
        dedupe_labels(runs)
        baseline, why = pick_baseline(runs, args.baseline)
        summary = summarize(runs, baseline)
    except ValueError as e:
        print(f"compare.py: error: {e}", file=sys.stderr)
        return 1

    print(f"baseline: {baseline.label} ({why})")
    print(f"target:   val loss {summary[0]['target']:.4f} = the baseline's final val loss "
          f"(iter {baseline.evals[-1]['iter']})")
    if baseline.incomplete:
        print("warning:  the baseline is incomplete, so the target is not its final loss yet")
    print("crossing: first eval at or below the target, linearly interpolated from the eval "
          "before; ratio = run / baseline (lower = faster)\n")
    print(format_table(summary) + "\n")
    plot_runs(runs, baseline, summary, args.out, args.smooth)
    print(f"wrote {args.out}")
    if args.csv:
        write_csv(summary, Path(args.csv))
        print(f"wrote {args.csv}")
    if args.json:
        write_json(summary, baseline, Path(args.json))
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
