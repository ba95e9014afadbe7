"""
Compare training runs: loss curves, and how fast each run reaches the baseline's final val loss.

Reads train.py out_dirs (metrics.jsonl + config.json) or runs of a wandb project, then
  1. draws one PNG: val loss against steps, against tokens seen (Hessian-estimate tokens
     included) and against training wall-clock; EMA-smoothed train loss against steps; and
     Sophia's win_rate against steps;
  2. prints a table: each run's final val loss and the steps / tokens / seconds it needed to
     FIRST reach the target (the baseline's final val loss), each as a ratio to the
     baseline's own (0.50x = needed half as many as the baseline), and the git commit each
     run was trained from (with a warning when they differ).

A crossing is linearly interpolated between the last eval above the target and the first eval
at or below it (an eval exactly at the target counts as reached). A run that never gets there
is reported as "not reached", never as a number.

    python scripts/compare.py out/adamw out/sophiag --out compare.png
    python scripts/compare.py out/* --baseline "adamw lr=6e-4 seed=0" --csv table.csv
    python scripts/compare.py --wandb my-team/sophia --runs adamw-125m sophiag-125m

Loading runs, crossings and the table's cells live in scripts/runs.py, shared with sweep.py.
"""
import argparse
import csv
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from errors import UserError, run_cli  # noqa: E402
from scripts.runs import (FORMATS, Reach, Run, clean_rows, default_label, fmt_count, fmt_loss, fmt_ratio,  # noqa: E402
                          jsonable, load_run, table)


@dataclass
class Comparison:
    """One run against the target (the baseline's final val loss)."""
    run: Run
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
        return {"label": run.label, "source": run.source, "optimizer": run.config.get("optimizer_name"),
                "baseline": self.is_baseline, "iters": run.last_iter, "max_iters": run.max_iters,
                "incomplete": run.incomplete, "evals": len(run.evals), "final_val_loss": run.final_val_loss,
                "diverged": self.diverged, "target": self.target, "commit": run.commit,
                "hellaswag_acc": run.last_logged("eval/hellaswag_acc"),
                "hellaswag_acc_norm": run.last_logged("eval/hellaswag_acc_norm"),
                **self.reach.columns("{}_to_target"), **self.ratio.columns("{}_ratio"), "reached": self.reached}


# -----------------------------------------------------------------------------
# loading from wandb

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
        raise UserError("wandb history has no 'iter' key: log train.py's metrics rows "
                        "(wandb_log=True) so the history holds iter, tokens_seen, time_s")
    return rows


def load_wandb_runs(project: str, refs: list[str] | None = None) -> list[Run]:
    """Load runs of a wandb project ("entity/project"); refs are run ids or display names
    (all runs of the project, oldest first, when refs is empty)."""
    if project.count("/") != 1:
        raise UserError(f"--wandb {project!r}: expected ENTITY/PROJECT, e.g. my-team/sophia")
    try:
        import wandb
    except ImportError:
        raise UserError("--wandb needs the wandb package: pip install wandb") from None
    try:
        api = wandb.Api(timeout=60)
        if refs:
            found = []
            for ref in refs:
                matches = list(api.runs(project, filters={"$or": [{"name": ref},
                                                                  {"display_name": ref}]}))
                if len(matches) != 1:
                    raise UserError(f"{len(matches)} runs in wandb project {project} have id or "
                                    f"name {ref!r}; pass one run id per --runs value")
                found.extend(matches)
        else:
            found = list(api.runs(project))
            if not found:
                raise UserError(f"wandb project {project} has no runs; check ENTITY/PROJECT")
        runs = []
        for r in found:
            source = f"wandb:{project}/{r.id}"
            config = dict(r.config)
            rows = clean_rows(rows_from_wandb_history(r.scan_history()), source)
            runs.append(Run(default_label(config, r.name), source, config, rows))
        return runs
    except wandb.errors.Error as e:
        raise UserError(f"could not read wandb project {project}: {e} -- run `wandb login` (or "
                        f"set WANDB_API_KEY) on a machine with network access, or pass local "
                        f"RUN_DIRs instead") from None


def dedupe_labels(runs: list[Run]) -> None:
    """Runs with the same label (same optimizer, lr and seed) get their source appended."""
    counts = Counter(run.label for run in runs)
    for run in runs:
        if counts[run.label] > 1:
            run.label = f"{run.label} ({Path(run.source).name})"


# -----------------------------------------------------------------------------
# the speedup-to-target numbers

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
        raise UserError(f"--baseline {choice!r} matches {len(matches)} runs; give one of the "
                        f"labels {labels} or a run dir")
    return matches[0], "--baseline"


def summarize(runs: list[Run], baseline: Run) -> list[Comparison]:
    """Each run against the baseline's final val loss: the steps / tokens / seconds to first
    reach it, and their ratios to the baseline's own."""
    target = baseline.final_val_loss
    if target is None or not math.isfinite(target):
        problem = "has no val/loss rows yet" if target is None else f"ended with val loss {target}"
        raise UserError(f"baseline {baseline.label!r} {problem}, so there is no target; "
                        f"pick another run with --baseline")
    base = Reach.of(baseline, target)
    return [Comparison(run, target, Reach.of(run, target), Reach.of(run, target).ratio(base), run is baseline)
            for run in runs]


# -----------------------------------------------------------------------------
# text output

def note(row: Comparison) -> str:
    run = row.run
    notes = ["baseline"] if row.is_baseline else []
    if run.incomplete:
        notes.append(f"incomplete ({run.last_iter}/{run.max_iters} iters)")
    if row.diverged:
        notes.append(f"diverged (final val loss {run.final_val_loss})")
    if not run.evals:
        notes.append("no eval yet")
    return ", ".join(notes)


def format_table(summary: list[Comparison]) -> str:
    """The comparison as aligned text; a HellaSwag acc_norm column when a run logged it."""
    key = "eval/hellaswag_acc_norm"
    hellaswag = any(row.run.last_logged(key) is not None for row in summary)
    rows = [["run", "iters", "final val loss", *(["hellaswag acc_norm"] if hellaswag else []),
             "steps to target", "tokens to target", "time to target", "commit", "note"]]
    for row in summary:
        run = row.run
        cells = [run.label, f"{run.last_iter}/{run.max_iters}" if run.max_iters else str(run.last_iter),
                 fmt_loss(run.final_val_loss)]
        if hellaswag:
            acc = run.last_logged(key)
            cells.append("-" if acc is None else f"{acc:.4f}")
        for unit, fmt in FORMATS.items():
            x = getattr(row.reach, unit)
            cells.append("not reached" if x is None else f"{fmt(x)} ({fmt_ratio(getattr(row.ratio, unit))})")
        rows.append(cells + [run.commit[:12], note(row)])
    return table(rows)


def write_csv(summary: list[Comparison], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(summary[0].flat()))
        writer.writeheader()
        writer.writerows(row.flat() for row in summary)


def write_json(summary: list[Comparison], baseline: Run, path: Path) -> None:
    """JSON is strict (no NaN): a NaN final loss becomes null, with "diverged": true."""
    report = {"baseline": baseline.label, "target": summary[0].target,
              "crossing": "first eval at or below target, linearly interpolated from the "
                          "previous eval; ratio = run / baseline (lower = faster)",
              "runs": [row.flat() for row in summary]}
    path.write_text(json.dumps(jsonable(report), indent=2, allow_nan=False) + "\n")


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


def plot_runs(runs: list[Run], baseline: Run, summary: list[Comparison], out, smooth: float | None = None):
    """Draw the comparison figure into `out` (PNG) and return the matplotlib Figure: val loss
    against steps, tokens and seconds above; train loss and Sophia's win_rate below.
    smooth: EMA coefficient per logged train row (None: auto_smooth)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter

    target = summary[0].target
    smooth = auto_smooth(runs) if smooth is None else smooth
    max_s = max((r.rows[-1]["time_s"] for r in runs if r.rows), default=0.0)
    t_div, t_unit = (3600, "hours") if max_s >= 7200 else (60, "min") if max_s >= 120 else (1, "s")

    fig = Figure(figsize=(19, 10.5), layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(2, 6)
    val_axes = [fig.add_subplot(grid[0, 2 * i:2 * i + 2]) for i in range(3)]
    train_ax, win_ax = fig.add_subplot(grid[1, :3]), fig.add_subplot(grid[1, 3:])
    fig.suptitle(f"Target: val loss {target:.4f} = final val loss of baseline "
                 f"'{baseline.label}'  (ratio = run's steps / tokens / time to first reach it "
                 f"÷ baseline's; lower is faster)", fontsize=13)

    def legend_label(run: Run) -> str:
        if run is baseline:
            return f"{run.label} [baseline]"
        if run.final_val_loss is not None and not math.isfinite(run.final_val_loss):
            return f"{run.label} (diverged)"
        if run.incomplete:
            return f"{run.label} (incomplete {run.last_iter}/{run.max_iters})"
        return run.label

    val_panels = [
        ("iter", "steps", 1, "steps (optimizer updates)", "val loss vs steps"),
        ("tokens_seen", "tokens", 1, "tokens seen (training + Hessian-estimate tokens)", "val loss vs tokens seen"),
        ("time_s", "seconds", t_div, f"training wall-clock ({t_unit}, eval time excluded)", "val loss vs wall-clock"),
    ]
    for ax, (key, unit, div, xlabel, title) in zip(val_axes, val_panels):
        curves = []
        for i, row in enumerate(summary):
            evals = row.run.evals
            xs = [r[key] / div for r in evals]
            ys = [r["val/loss"] for r in evals]
            curves.append((xs, ys))
            ax.plot(xs, ys, color=f"C{i}", lw=2.4 if row.is_baseline else 1.6,
                    marker="." if len(xs) <= 60 else None, label=legend_label(row.run))
            x = getattr(row.reach, unit)
            if x is not None:
                ax.plot([x / div], [target], "o", ms=8, mfc="none", mec=f"C{i}", mew=2)
        ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4f}")
        focus_ylim(ax, curves, target)
        ax.set(xlabel=xlabel, ylabel="val loss (nats/token)", title=f"{title}  (circles: first reach of target)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    val_axes[1].xaxis.set_major_formatter(FuncFormatter(lambda x, _: fmt_count(x)))

    curves = []
    for i, run in enumerate(runs):
        train = [r for r in run.rows if "train/loss" in r]
        xs, raw = [r["iter"] for r in train], [r["train/loss"] for r in train]
        smoothed = ema(raw, smooth)
        curves.append((xs, smoothed))
        train_ax.plot(xs, raw, color=f"C{i}", lw=0.6, alpha=0.25)
        train_ax.plot(xs, smoothed, color=f"C{i}", lw=1.6, label=legend_label(run))
    train_ax.axhline(target, color="k", ls="--", lw=1, label=f"target {target:.4f} (a val loss)")
    focus_ylim(train_ax, curves, target)
    train_ax.set(xlabel="steps (optimizer updates)", ylabel="train loss (nats/token)",
                 title=f"train loss, bias-corrected EMA β={smooth:.3g} per logged row (faint: raw)")
    train_ax.grid(alpha=0.3)
    train_ax.legend(fontsize=8)

    sophia = [(i, run) for i, run in enumerate(runs) if any("train/win_rate" in r for r in run.rows)]
    for i, run in sophia:
        rows = [r for r in run.rows if "train/win_rate" in r]
        win_ax.plot([r["iter"] for r in rows], [r["train/win_rate"] for r in rows], color=f"C{i}",
                    lw=1.4, label=legend_label(run))
    win_ax.axhspan(0.1, 0.5, color="g", alpha=0.08, label="healthy range 0.1-0.5")
    win_ax.set(xlabel="steps (optimizer updates)", ylabel="win_rate (fraction)", ylim=(0, 1),
               title="Sophia win_rate: fraction of coordinates not clipped")
    if not sophia:
        win_ax.text(0.5, 0.5, "no Sophia runs\n(no train/win_rate logged)", ha="center",
                    va="center", transform=win_ax.transAxes, fontsize=12, color="0.4")
    win_ax.grid(alpha=0.3)
    win_ax.legend(fontsize=8)

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    return fig


# -----------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\nLoading runs")[0].strip(),
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


def compare(argv=None) -> None:
    args = parse_args(argv)
    if not args.run_dirs and not args.wandb:
        raise UserError("nothing to compare: give RUN_DIRs (train.py out_dirs) or --wandb ENTITY/PROJECT")
    if args.runs and not args.wandb:
        raise UserError("--runs selects wandb runs: add --wandb ENTITY/PROJECT")
    if args.smooth is not None and not 0 <= args.smooth < 1:
        raise UserError(f"--smooth {args.smooth}: the EMA coefficient must be in [0, 1)")
    runs = [load_run(d) for d in args.run_dirs]
    if args.wandb:
        runs += load_wandb_runs(args.wandb, args.runs)
    if args.labels:
        if len(args.labels) != len(runs):
            raise UserError(f"got {len(args.labels)} --labels for {len(runs)} runs; give one label per run")
        for run, label in zip(runs, args.labels):
            run.label = label
    dedupe_labels(runs)
    baseline, why = pick_baseline(runs, args.baseline)
    summary = summarize(runs, baseline)

    print(f"baseline: {baseline.label} ({why})")
    print(f"target:   val loss {summary[0].target:.4f} = the baseline's final val loss "
          f"(iter {baseline.evals[-1]['iter']})")
    if baseline.incomplete:
        print("warning:  the baseline is incomplete, so the target is not its final loss yet")
    commits = {run.commit for run in runs}
    if len(commits) > 1:
        print(f"warning:  the runs were trained from {len(commits)} different commits "
              f"({', '.join(sorted(c[:12] for c in commits))}): code changes may explain differences")
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


def main(argv=None) -> int:
    return run_cli(compare, argv, prog="compare.py")


if __name__ == "__main__":
    sys.exit(main())
