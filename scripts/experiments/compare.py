"""Compare training runs (train.py out_dirs or a wandb project's runs): one PNG of the loss curves, and per run its
final val loss, the steps / tokens / seconds it needed to FIRST reach the baseline's final val loss, each as a ratio
to the baseline's own (0.50x = half as many) or "not reached", and its git commit (docs/sweep_and_compare.md).

    python scripts/experiments/compare.py out/adamw out/sophiag --out compare.png
    python scripts/experiments/compare.py out/* --baseline "adamw lr=6e-4 seed=0" --csv table.csv
    python scripts/experiments/compare.py --wandb my-team/sophia --runs adamw-125m sophiag-125m
    python scripts/experiments/compare.py out/char/sophiag_* --win_rate   # is Sophia's clipping engaged?
    python scripts/experiments/compare.py out/regime/s1/adamw_lr3e-2_seed0 out/regime/s1/sophiag_* --groups g.png
"""

import argparse
import csv
import json
import math
import statistics
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import runs
from errors import UserError, run_cli
from telemetry import GROUPS, PREFIX

BAND = (0.1, 0.5)  # Sophia's win_rate where its clipping is engaged (the official guidance)
RATIO = "ratio = run / baseline (lower = faster)"


def rows_from_wandb_history(history: Iterable[dict]) -> list[dict]:
    """wandb history rows (Run.scan_history()) -> metrics.jsonl rows, less wandb's _keys and other wandb.log rows."""
    history = list(history)
    rows = [{k: v for k, v in raw.items() if not k.startswith("_")} for raw in history if "iter" in raw]
    if history and not rows:
        fix = "log train.py's metrics rows (wandb_log=True) so the history holds iter, tokens_seen, time_s"
        raise UserError(f"wandb history has no 'iter' key: {fix}")
    return rows


def load_wandb_runs(project: str, refs: list[str] | None = None) -> list[runs.RunRecord]:
    """Runs of a wandb project ("entity/project") by run id or display name (no refs: all, oldest first)."""
    if project.count("/") != 1:
        raise UserError(f"--wandb {project!r}: expected ENTITY/PROJECT, e.g. my-team/sophia")
    try:
        import wandb
    except ImportError:
        raise UserError("--wandb needs the wandb package: pip install wandb") from None
    try:
        api = wandb.Api(timeout=60)
        found = [] if refs else list(api.runs(project))
        if not refs and not found:
            raise UserError(f"wandb project {project} has no runs; check ENTITY/PROJECT")
        for ref in refs or []:
            matches = list(api.runs(project, filters={"$or": [{"name": ref}, {"display_name": ref}]}))
            if len(matches) != 1:
                fix = "pass one run id per --runs value"
                raise UserError(f"{len(matches)} runs in wandb project {project} have id or name {ref!r}; {fix}")
            found += matches
        records = []
        for r in found:
            source, config = f"wandb:{project}/{r.id}", dict(r.config)
            rows = runs.clean_rows(rows_from_wandb_history(r.scan_history()), source)
            records.append(runs.RunRecord(runs.default_label(config, r.name), source, config, rows))
        return records
    except wandb.errors.Error as e:
        fix = "run `wandb login` (or set WANDB_API_KEY) on a machine with network access, or pass local RUN_DIRs"
        raise UserError(f"could not read wandb project {project}: {e} -- {fix} instead") from None


def pick_baseline(records: list[runs.RunRecord], choice: str | None = None) -> tuple[runs.RunRecord, str]:
    """The baseline run and why it was chosen. choice: a label, run dir, dir name or wandb id."""
    if choice is None:
        adamw = [run for run in records if run.config.get("optimizer_name") == "adamw"]
        if adamw:
            return adamw[0], "the first run with optimizer_name='adamw'"
        return records[0], "the first run; no run has optimizer_name='adamw'"
    here = Path(choice).resolve()
    matches = [
        r for r in records if choice in (r.label, r.source, Path(r.source).name) or here == Path(r.source).resolve()
    ]
    if len(matches) != 1:
        fix = f"give one of the labels {', '.join(repr(r.label) for r in records)} or a run dir"
        raise UserError(f"--baseline {choice!r} matches {len(matches)} runs; {fix}")
    return matches[0], "--baseline"


def format_table(summary: list[runs.Comparison]) -> str:
    """The comparison as aligned text; a HellaSwag acc_norm column when a run logged it."""
    key = "eval/hellaswag_acc_norm"
    hellaswag = any(row.run.last_logged(key) is not None for row in summary)
    head = ["run", "iters", "final val loss", *(["hellaswag acc_norm"] if hellaswag else [])]
    rows = [head + ["steps to target", "tokens to target", "time to target", "commit", "note"]]
    for row in summary:
        run = row.run
        iters = f"{run.last_iter}/{run.max_iters}" if run.max_iters else str(run.last_iter)
        cells = [run.label, iters, runs.fmt_loss(run.final_val_loss)]
        cells += [runs.fmt_loss(run.last_logged(key))] if hellaswag else []
        for unit, fmt in runs.FORMATS.items():
            x = getattr(row.reach, unit)
            cells.append("not reached" if x is None else f"{fmt(x)} ({runs.fmt_ratio(getattr(row.ratio, unit))})")
        notes = ["baseline"] if row.is_baseline else []
        notes += [f"incomplete ({run.last_iter}/{run.max_iters} iters)"] if run.incomplete else []
        notes += [f"diverged (final val loss {run.final_val_loss})"] if row.diverged else []
        rows.append(cells + [run.commit[:12], ", ".join(notes + ([] if run.evals else ["no eval yet"]))])
    return runs.table(rows)


def win_rate_line(run: runs.RunRecord) -> str:
    """The range of a Sophia run's logged train/win_rate after warmup and its share of steps inside BAND."""
    warmup = run.config.get("warmup_iters", 0)
    rates = [r.get("train/win_rate", math.nan) for r in run.rows if r["iter"] > warmup]
    rates = [r for r in rates if math.isfinite(r)]
    if not rates:
        return f"{run.label}: no win_rate logged after warmup ({warmup} steps) yet"
    inside = sum(BAND[0] <= r <= BAND[1] for r in rates) / len(rates)
    spread = f"{min(rates):.3f}-{max(rates):.3f} (median {statistics.median(rates):.3f})"
    band = f"{100 * inside:.0f}% of {len(rates)} logged steps inside {BAND[0]}-{BAND[1]}"
    return f"{run.label}: rho {run.config.get('rho', '?')}: win_rate after warmup {spread}, {band}"


def plot_groups(records: list[runs.RunRecord], out: str) -> None:
    """Per parameter group, against steps: update ratio (all runs), win_rate and Hessian mean (Sophia runs)."""
    from matplotlib.figure import Figure

    logged = [r for r in records if any(k.startswith(PREFIX) for row in r.rows for k in row)]
    if not logged:
        raise UserError(f"--groups: no run logged {PREFIX}* values (train.py logs them at every log_interval)")
    rows = [("update_ratio", "update RMS / weight RMS", "log"), ("win_rate", "win_rate (not clipped)", "linear")]
    rows.append(("hessian_mean", "Hessian EMA mean", "log"))
    fig = Figure(figsize=(3.2 * len(GROUPS), 8.5))
    axes = fig.subplots(3, len(GROUPS), sharex=True, sharey="row", squeeze=False)
    for (metric, ylabel, scale), ax_row in zip(rows, axes):
        for group, ax in zip(GROUPS, ax_row):
            key = f"{PREFIX}{group}/{metric}"
            for i, run in enumerate(logged):
                points = [(r["iter"], r[key]) for r in run.rows if r.get(key) is not None]
                if points:
                    ax.plot(*zip(*points), color=f"C{i}", lw=1.2, label=run.label)
            ax.set_yscale(scale)
            ax.set(title=group if metric == "update_ratio" else "", xlabel="steps" if metric == "hessian_mean" else "")
            ax.grid(alpha=0.3)
        ax_row[0].set_ylabel(ylabel)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def compare(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="*", metavar="RUN_DIR", help="train.py out_dirs")
    baseline = "label, run dir, dir name or wandb run id of the baseline"
    p.add_argument("--baseline", help=baseline + " (default: the first adamw run, else the first run)")
    p.add_argument("--out", default="compare.png", help="PNG to write (default compare.png)")
    p.add_argument("--labels", nargs="+", help="one label per run, in order (after the RUN_DIRs)")
    p.add_argument("--csv", help="also write the table as CSV here")
    p.add_argument("--json", help="also write the table as JSON here")
    smooth = "EMA coefficient for train loss, per logged row (default: a window of 2.5%% of the longest run, >= 3 rows)"
    p.add_argument("--smooth", type=float, help=smooth)
    p.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read runs from this wandb project")
    p.add_argument("--runs", nargs="+", help="with --wandb: run ids or display names (default: all the project's runs)")
    win_rate = f"also print each Sophia run's win_rate after warmup against the band {BAND[0]}-{BAND[1]}"
    p.add_argument("--win_rate", action="store_true", help=win_rate)
    p.add_argument("--groups", metavar="PNG", help="also draw the per-group telemetry (telemetry.py) into this PNG")
    args = p.parse_args(argv)
    if not args.run_dirs and not args.wandb:
        raise UserError("nothing to compare: give RUN_DIRs (train.py out_dirs) or --wandb ENTITY/PROJECT")
    if args.runs and not args.wandb:
        raise UserError("--runs selects wandb runs: add --wandb ENTITY/PROJECT")
    if args.smooth is not None and not 0 <= args.smooth < 1:
        raise UserError(f"--smooth {args.smooth}: the EMA coefficient must be in [0, 1)")
    records = [runs.load_run(d) for d in args.run_dirs] + (load_wandb_runs(args.wandb, args.runs) if args.wandb else [])
    if args.labels and len(args.labels) != len(records):
        raise UserError(f"got {len(args.labels)} --labels for {len(records)} runs; give one label per run")
    for run, label in zip(records, args.labels or []):
        run.label = label
    counts = Counter(run.label for run in records)
    for run in records:  # runs with the same label (same optimizer, lr and seed) get their source appended
        run.label = f"{run.label} ({Path(run.source).name})" if counts[run.label] > 1 else run.label
    baseline, why = pick_baseline(records, args.baseline)
    summary = runs.summarize(records, baseline)

    print(f"baseline: {baseline.label} ({why})")
    iters = baseline.evals[-1]["iter"]
    print(f"target:   val loss {summary[0].target:.4f} = the baseline's final val loss (iter {iters})")
    if baseline.incomplete:
        print("warning:  the baseline is incomplete, so the target is not its final loss yet")
    commits = {run.commit for run in records}
    if len(commits) > 1:
        shown = f"{len(commits)} different commits ({', '.join(sorted(c[:12] for c in commits))})"
        print(f"warning:  the runs were trained from {shown}: code changes may explain differences")
    print(f"crossing: first eval at or below the target, linearly interpolated from the eval before; {RATIO}\n")
    print(format_table(summary) + "\n")
    if args.win_rate:
        sophia = [run for run in records if str(run.config.get("optimizer_name", "")).startswith("sophia")]
        print("\n".join(win_rate_line(run) for run in sophia) or "--win_rate: no Sophia run to report", end="\n\n")
    runs.plot_runs(records, baseline, summary, args.out, args.smooth)
    print(f"wrote {args.out}")
    if args.groups:
        plot_groups(records, args.groups)
        print(f"wrote {args.groups}")
    if args.csv:
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(summary[0].flat()))
            writer.writeheader()
            writer.writerows(row.flat() for row in summary)
        print(f"wrote {args.csv}")
    if args.json:  # strict JSON: a NaN final loss becomes null, with "diverged": true
        crossing = "first eval at or below target, linearly interpolated from the previous eval"
        report = {"baseline": baseline.label, "target": summary[0].target, "crossing": f"{crossing}; {RATIO}"}
        report["runs"] = [r.flat() for r in summary]
        Path(args.json).write_text(json.dumps(runs.jsonable(report), indent=2, allow_nan=False) + "\n")
        print(f"wrote {args.json}")


def main(argv: list[str] | None = None) -> int:
    return run_cli(compare, argv, prog="compare.py")


if __name__ == "__main__":
    sys.exit(main())
