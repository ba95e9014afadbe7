"""A fair baseline: an lr sweep per optimizer over seeds, then the speedup (docs/sweep_and_compare.md). Each (optimizer,
lr, seed) is a train.py run in <out>/<optimizer>_lr<lr>_seed<seed> (log: train.log); per optimizer the lr of lowest mean
final val loss wins; per seed, the selected runs' speedup over the baseline's of the SAME seed; the wall-clock per step.

    python scripts/experiments/sweep.py --configs config/train_tiny_adamw.py config/train_tiny_sophiag.py \\
        --lrs adamw=1e-3,3e-3,1e-2 sophiag=1e-3,3e-3,1e-2 --seeds 0 1 --out out/sweep

Rerunning the same command resumes (finished runs are skipped); a failed run is reported and the sweep goes on
(exit status 1). Writes <out>/sweep_summary.json and <out>/sweep_best.png (compare.py's figure of the selected runs).
"""

import argparse
import json
import math
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import checkpoint
import runs
import train
from errors import UserError, run_cli
from provenance import REPO

RESERVED = ("learning_rate", "seed", "out_dir", "init_from", "optimizer_name")  # train.py keys the sweep sets itself
SUMMARY_JSON, BEST_PNG = "sweep_summary.json", "sweep_best.png"
say = partial(print, flush=True)  # the console is often a nohup log file


@dataclass
class Point:  # one training run of the grid
    optimizer: str
    lr: float
    seed: int
    out_dir: Path
    args: list[str]  # train.py arguments
    settings: dict  # the resolved TrainConfig, which the run dir's config.json must match

    @property
    def label(self) -> str:  # the same label compare.py gives the run
        return f"{self.optimizer} lr={runs.fmt_lr(self.lr)} seed={self.seed}"

    def load(self) -> runs.RunRecord | None:
        try:
            return runs.load_run(self.out_dir, self.label)
        except UserError:
            return None


def parse_lrs(specs: list[str]) -> dict[str, list[float]]:
    """["adamw=1e-3,3e-3", ...] -> {"adamw": [0.001, 0.003]} (sorted, unique)."""
    grid = {}
    for spec in specs:
        name, eq, values = spec.partition("=")
        if not eq or not name or not values:
            raise UserError(f"--lrs {spec!r}: write OPTIMIZER=LR,LR,..., e.g. adamw=1e-3,3e-3")
        if name in grid:
            raise UserError(f"--lrs names {name!r} twice: give all its lrs in one OPTIMIZER=LR,LR,...")
        try:
            lrs = sorted({float(v) for v in values.split(",")})
        except ValueError:
            raise UserError(f"--lrs {spec!r}: learning rates must be numbers, e.g. {name}=1e-3,3e-3") from None
        if not all(math.isfinite(lr) and lr > 0 for lr in lrs):
            raise UserError(f"--lrs {spec!r}: learning rates must be finite and > 0")
        grid[name] = lrs
    return grid


def parse_sets(sets: list[str]) -> list[str]:
    """["n_layer=2", ...] -> ["--n_layer=2", ...]; train.py checks keys and values."""
    for item in sets:
        key, eq, _ = item.partition("=")
        if not eq or not key or key.startswith("-"):
            raise UserError(f"--set {item!r}: write KEY=VALUE with a train.py key, e.g. max_iters=100")
        if key in RESERVED:
            fix = "use --lrs, --seeds, --out and one config per optimizer"
            raise UserError(f"--set {key}: the sweep sets {', '.join(RESERVED)} itself ({fix})")
    return [f"--{item}" for item in sets]


def optimizers(configs: list[str], grid: dict[str, list[float]], sets: list[str]) -> dict[str, str]:
    """{optimizer_name: its config file}, checked against the configs and the --lrs grid."""
    by_optimizer: dict[str, str] = {}
    for path in configs:
        if not Path(path).is_file():
            raise UserError(f"--configs {path}: file not found")
        cfg = train.parse_args([path, *sets])
        if cfg.init_from not in ("scratch", "auto", "resume"):
            raise UserError(f"{path} sets init_from={cfg.init_from!r}: a sweep trains from scratch")
        if cfg.optimizer_name in by_optimizer:
            other = by_optimizer[cfg.optimizer_name]
            raise UserError(f"{other} and {path} both train {cfg.optimizer_name!r}: give one config per optimizer")
        by_optimizer[cfg.optimizer_name] = path
    for name in grid:
        if name not in by_optimizer:
            trained = runs.join(list(by_optimizer))
            raise UserError(f"--lrs {name}: no --configs file trains {name!r} (they train {trained})")
    for name, path in by_optimizer.items():
        if name not in grid:
            raise UserError(f"no --lrs for {name!r} (trained by {path}): add e.g. {name}=1e-3,3e-3,1e-2")
    return by_optimizer


def plan(
    by_optimizer: dict[str, str], grid: dict[str, list[float]], seeds: list[int], out: Path, sets: list[str]
) -> list[Point]:
    """Every point of grid x seeds, seed by seed, each checked against what its run dir already holds."""
    points, dirs = [], set()
    for seed in seeds:
        for name, path in by_optimizer.items():  # the --configs order
            for lr in grid.get(name, []):
                out_dir = out / f"{name}_lr{runs.fmt_lr(lr)}_seed{seed}"
                if out_dir in dirs:
                    fix = "make them differ in the first 4 digits"
                    raise UserError(f"--lrs {name}: two learning rates both name {out_dir}; {fix}")
                dirs.add(out_dir)
                args = [path, *sets, f"--learning_rate={lr!r}", f"--seed={seed}", f"--out_dir={out_dir}"]
                args.append("--init_from=auto")
                points.append(Point(name, lr, seed, out_dir, args, asdict(train.parse_args(args))))
    defaults = asdict(train.TrainConfig())
    for p in points:  # a run dir left by a sweep with other settings would be resumed or skipped wrongly
        saved = p.out_dir / "config.json"
        if not saved.is_file():
            continue
        # keys added to train.py since match at their default; out_dir is where config.json was found (any spelling)
        old = json.loads(saved.read_text()) | {"out_dir": p.settings["out_dir"]}
        diff = [f"{k}={old.get(k)!r} there, {v!r} now" for k, v in p.settings.items() if old.get(k, defaults[k]) != v]
        if diff:
            fix = "use another --out, or delete that directory"
            raise UserError(f"{p.out_dir} holds a run with other settings ({'; '.join(diff[:3])}): {fix}")
    return points


def run_sweep(points: list[Point], launcher: list[str]) -> dict[str, str]:
    """Train every unfinished point; returns {label: why it failed} for those that failed."""
    todo = sum(final_loss(p.load()) is None for p in points)
    say(f"sweep: {len(points)} runs, {len(points) - todo} finished already, {todo} to train")
    start, durations, failed = time.time(), [], {}
    for k, point in enumerate(points, 1):
        head, log, run = f"[{k}/{len(points)}] {point.label}:", point.out_dir / "train.log", point.load()
        if run is not None and run.finished:
            say(f"{head} finished already (final val loss {run.final_val_loss:.4f}), skipped")
            continue
        verb = "resuming" if checkpoint.checkpoint_paths(point.out_dir) else "training"
        eta = f"ETA {runs.fmt_seconds(statistics.mean(durations) * todo)}" if durations else "ETA after the first run"
        say(f"{head} {verb} (log: {log}) | elapsed {runs.fmt_seconds(time.time() - start)} | {todo} runs left, {eta}")
        t0, cmd = time.time(), [*launcher, str(REPO / "train.py"), *point.args]
        point.out_dir.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as f:  # train.py's output appended to train.log in the run dir
            f.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} sweep.py runs: {shlex.join(cmd)}\n")
            f.flush()
            code = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
        durations.append(time.time() - t0)
        todo, run, took = todo - 1, point.load(), runs.fmt_seconds(durations[-1])
        if code == 0 and run is not None and run.finished:
            final = f"final val loss {run.final_val_loss:.4f} at iter {run.evals[-1]['iter']}/{run.max_iters}"
            say(f"{head} done in {took}: {final}")
            continue
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
        why = f"exit {code}" if code else "exited 0 without its final eval"
        failed[point.label] = f"{why}: {lines[-1] if lines else '(empty log)'}"
        say(f"{head} FAILED after {took} ({failed[point.label]}); log: {log}")
    say(f"sweep: trained for {runs.fmt_seconds(time.time() - start)}, {len(failed)} failed")
    return failed


def select_lr(losses: dict[float, list[float | None]]) -> dict:
    """losses: lr -> each seed's final val loss (None: unfinished); the means, the best lr, and if it is a grid edge."""
    means: dict[float, float | None] = {}
    for lr, values in losses.items():
        finals = [v for v in values if v is not None]
        finite = all(math.isfinite(v) for v in finals)
        means[lr] = None if len(finals) < len(values) else statistics.mean(finals) if finite else math.inf
    judged = {lr: m for lr, m in means.items() if m is not None and math.isfinite(m)}
    best = min(judged, key=judged.__getitem__) if judged else None
    edge = None
    done = sorted(lr for lr, m in means.items() if m is not None)  # diverged lrs bracket too
    if best is not None and len(done) == len(means):
        if len(done) == 1:
            edge = "the only lr of the grid: sweep at least 3"
        elif best in (done[0], done[-1]):
            side, step = ("highest", 3) if best == done[-1] else ("lowest", 1 / 3)
            edge = f"the {side} lr of the grid: widen the grid (e.g. add {runs.fmt_lr(float(f'{best * step:.2g}'))})"
    elif best is not None and best in (done[0], done[-1]):
        edge = "the lowest or highest lr with finished runs: finish the sweep to know"
    return {"means": means, "best": best, "edge": edge}


def step_time(seconds: dict[str, list[float]], baseline: str) -> dict:
    """Per optimizer, its finished runs' seconds per step: median, min, max, and the median / the baseline's."""
    out = {}
    for name, values in seconds.items():
        median = statistics.median(values)
        ratio = median / statistics.median(seconds[baseline]) if baseline in seconds else None
        out[name] = {"n": len(values), "median": median, "min": min(values), "max": max(values), "ratio": ratio}
    return out


def status(run: runs.RunRecord | None, failure: str | None) -> str:
    if failure:
        return f"FAILED ({failure})"
    if run is None or not run.rows:
        return "not started"
    if not run.finished:
        return f"incomplete ({run.last_iter}/{run.max_iters} iters)"
    return "finished" if math.isfinite(run.final_val_loss or 0.0) else "diverged"


def final_loss(run: runs.RunRecord | None) -> float | None:
    return run.final_val_loss if run is not None and run.finished else None


def selected_lrs(points: list[Point]) -> dict[str, dict]:
    losses: dict[str, dict[float, list]] = {}
    for p in points:
        losses.setdefault(p.optimizer, {}).setdefault(p.lr, []).append(final_loss(p.load()))
    return {name: select_lr(by_lr) | {"losses": by_lr} for name, by_lr in losses.items()}


def analyze(
    tune_points: list[Point], confirm_points: list[Point], baseline: str, failed: dict[str, str]
) -> tuple[dict, dict]:
    """The summary (JSON-ready but for inf/NaN) and the selected runs {optimizer: {seed: RunRecord}}."""
    points = tune_points + confirm_points
    loaded = {p.label: p.load() for p in points}
    rows, seconds = [], {}
    for p in points:
        run, final = loaded[p.label], final_loss(loaded[p.label])
        if run is not None and final is not None:  # time_s excludes evals; Sophia's Hessian refreshes count
            seconds.setdefault(p.optimizer, []).append(run.rows[-1]["time_s"] / run.last_iter)
        row = dict(optimizer=p.optimizer, lr=p.lr, seed=p.seed, dir=str(p.out_dir), final_val_loss=final)
        rows.append(row | {"status": status(run, failed.get(p.label))})
    selection, chosen = selected_lrs(tune_points), {}
    for name, sel in selection.items():
        if sel["best"] is not None:
            best = [p for p in points if p.optimizer == name and p.lr == sel["best"]]
            chosen[name] = {p.seed: loaded[p.label] for p in best if final_loss(loaded[p.label]) is not None}
    others = {name: by_seed for name, by_seed in chosen.items() if name != baseline and baseline in chosen}
    speedups = {name: runs.speedup(chosen[baseline], by_seed) for name, by_seed in others.items()}
    seeds, tune_seeds = sorted({p.seed for p in points}), sorted({p.seed for p in tune_points})
    summary = dict(baseline=baseline, seeds=seeds, tune_seeds=tune_seeds)
    summary |= dict(runs=rows, selection={}, speedup=speedups, step_time=step_time(seconds, baseline))
    for name, sel in selection.items():
        lrs = [{"lr": lr, "mean_val_loss": m, "per_seed": sel["losses"][lr]} for lr, m in sorted(sel["means"].items())]
        summary["selection"][name] = {"lrs": lrs, "best_lr": sel["best"], "edge": sel["edge"]}
    return summary, chosen


def format_summary(summary: dict) -> str:
    baseline, seeds, tune, selection = (summary[k] for k in ("baseline", "seeds", "tune_seeds", "selection"))
    rows = [["optimizer", "lr", "seed", "final val loss", "status"]]
    for r in summary["runs"]:
        loss = runs.fmt_loss(r["final_val_loss"])
        rows.append([r["optimizer"], runs.fmt_lr(r["lr"]), str(r["seed"]), loss, r["status"]])
    lines = ["runs (final val loss = the last eval, at max_iters)", runs.table(rows), ""]
    lines.append(f"learning rate: mean final val loss over seeds {runs.join(tune)}")
    confirm = [s for s in seeds if s not in tune]
    if confirm:
        lines.append(f"(seeds {runs.join(confirm)} train each optimizer's selected lr only, --tune_seeds {len(tune)})")
    rows = [["optimizer", "lr", "mean", "per seed", ""]]
    for name, sel in selection.items():
        for entry in sel["lrs"]:
            mean = entry["mean_val_loss"]
            mean = "incomplete" if mean is None else "diverged" if math.isinf(mean) else f"{mean:.4f}"
            best = "<- best" if entry["lr"] == sel["best_lr"] else ""
            rows.append([name, runs.fmt_lr(entry["lr"]), mean, " ".join(map(runs.fmt_loss, entry["per_seed"])), best])
    lines.append(runs.table(rows))
    for name, sel in selection.items():
        if sel["best_lr"] is None:
            lines.append(f"{name}: no lr has a finished, finite run for every seed: nothing selected")
        else:
            lines.append(f"{name}: best lr {runs.fmt_lr(sel['best_lr'])}" + (f", {sel['edge']}" if sel["edge"] else ""))
    if baseline not in selection or selection[baseline]["best_lr"] is None:
        lines.append(f"no speedup: the baseline {baseline} has no selected lr")
    for name, result in summary["speedup"].items():
        lr, base_lr = (runs.fmt_lr(selection[n]["best_lr"]) for n in (name, baseline))
        what = f"steps / tokens / seconds to first reach the final val loss of the {baseline} run of the same seed"
        lines += ["", f"speedup of {name} lr={lr} over {baseline} lr={base_lr}: {what}"]
        lines.append(runs.format_speedup(result, name, baseline, seeds))
    if summary["step_time"]:
        fair = "the ratio is only as fair as the machine load was even across those runs"
        median = "median over each optimizer's finished runs (all lrs and seeds)"
        lines += ["", f"training wall-clock per step (time_s / steps, evals excluded), {median}; {fair}"]
        rows = [["optimizer", "runs", "median", "min-max", f"x {baseline}"]]
        for name, st in summary["step_time"].items():
            ratio = "-" if st["ratio"] is None else f"{st['ratio']:.2f}x"
            rows.append([name, str(st["n"]), f"{st['median']:.3f} s", f"{st['min']:.3f}-{st['max']:.3f} s", ratio])
        lines.append(runs.table(rows))
    return "\n".join(lines)


def write_outputs(summary: dict, chosen: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = [out / SUMMARY_JSON]
    if summary["baseline"] in chosen:
        best = [run for name in chosen for run in chosen[name].values()]
        base = chosen[summary["baseline"]][summary["seeds"][0]]
        runs.plot_runs(best, base, runs.summarize(best, base), out / BEST_PNG)
        written.append(out / BEST_PNG)
    (out / SUMMARY_JSON).write_text(json.dumps(runs.jsonable(summary), indent=2, allow_nan=False) + "\n")
    return written


def sweep(args: argparse.Namespace, command: str) -> int:
    """The whole sweep; a UserError for bad input, before anything trains."""
    out = Path(args.out)
    if len(set(args.seeds)) != len(args.seeds):
        raise UserError(f"--seeds {' '.join(map(str, args.seeds))}: a seed is repeated")
    launcher = shlex.split(args.launcher)
    if not launcher:
        raise UserError("--launcher is empty: leave it out to run train.py with this python")
    n_tune = len(args.seeds) if args.tune_seeds is None else args.tune_seeds
    if not 1 <= n_tune <= len(args.seeds):
        raise UserError(f"--tune_seeds {n_tune}: must be 1 to {len(args.seeds)}, the number of --seeds")
    tune_seeds, confirm_seeds = args.seeds[:n_tune], args.seeds[n_tune:]
    grid, sets = parse_lrs(args.lrs), parse_sets(args.set)
    by_optimizer = optimizers(args.configs, grid, sets)
    if args.baseline not in by_optimizer:
        raise UserError(f"--baseline {args.baseline}: no --configs file trains it")
    tune_points = plan(by_optimizer, grid, tune_seeds, out, sets)

    def confirm() -> list[Point]:  # known once the tuning runs have finished: each optimizer at its selected lr
        selected = selected_lrs(tune_points).items()
        best = {name: [s["best"]] for name, s in selected if s["best"] is not None and None not in s["means"].values()}
        return plan(by_optimizer, best, confirm_seeds, out, sets)

    if args.dry_run:
        points = tune_points + confirm()
        for k, p in enumerate(points, 1):
            verdict = "would run" if final_loss(p.load()) is None else "finished, would skip"
            cmd = shlex.join([*launcher, str(REPO / "train.py"), *p.args])
            say(f"[{k}/{len(points)}] {p.label}: {verdict}\n    {cmd}")
        if confirm_seeds:
            tuned, other = " ".join(map(str, tune_seeds)), " ".join(map(str, confirm_seeds))
            say(f"seeds {other}: each optimizer at the lr selected on seeds {tuned} (listed once those have finished)")
        return 0
    failed = {} if args.analyze_only else run_sweep(tune_points, launcher)
    confirm_points = confirm()
    if not args.analyze_only and confirm_points:
        say(f"seeds {' '.join(map(str, confirm_seeds))}: the selected lrs")
        failed |= run_sweep(confirm_points, launcher)
    summary, chosen = analyze(tune_points, confirm_points, args.baseline, failed)
    summary["command"] = command
    say("\n" + format_summary(summary) + "\n")
    for path in write_outputs(summary, chosen, out):
        say(f"wrote {path}")
    selected = all(sel["best_lr"] is not None for sel in summary["selection"].values())
    confirmed = len(confirm_points) == len(confirm_seeds) * len(by_optimizer)
    complete = selected and confirmed and all(r["final_val_loss"] is not None for r in summary["runs"])
    return 1 if failed or not complete else 0


def main(argv: list[str] | None = None) -> int:
    intro, examples = __doc__.strip().split("\n\n    ", 1)
    formatter = argparse.RawDescriptionHelpFormatter
    p = argparse.ArgumentParser(description=intro, epilog="    " + examples, formatter_class=formatter)
    configs = "train.py config files, one per optimizer (its optimizer_name)"
    p.add_argument("--configs", nargs="+", required=True, metavar="CONFIG", help=configs)
    lrs = "learning rates per optimizer, e.g. adamw=1e-3,3e-3,1e-2"
    p.add_argument("--lrs", nargs="+", required=True, metavar="OPT=LR,LR", help=lrs)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="default: 0 1")
    tune = "select each lr on the first N seeds' full grid, then train the other seeds at the selected lr only"
    p.add_argument("--tune_seeds", type=int, metavar="N", help=tune + " (default: every seed trains the full grid)")
    p.add_argument("--out", default="out/sweep", help="root of the run dirs (default out/sweep)")
    sets = "train.py settings for every run, e.g. max_iters=100 device=cpu"
    p.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE", help=sets)
    p.add_argument("--baseline", default="adamw", help="optimizer whose final val loss is the target (default adamw)")
    launcher = 'command that runs train.py (default: this python), e.g. "torchrun --standalone --nproc_per_node=8"'
    p.add_argument("--launcher", default=shlex.quote(sys.executable), help=launcher)
    p.add_argument("--dry_run", action="store_true", help="print the runs and their commands, train nothing")
    p.add_argument("--analyze_only", action="store_true", help="summarize the existing run dirs, train nothing")
    args = p.parse_args(argv)
    command = shlex.join(["scripts/experiments/sweep.py", *(sys.argv[1:] if argv is None else argv)])
    interrupted = "interrupted: rerun the same command to resume (finished runs are skipped)"
    return run_cli(lambda _: sweep(args, command), prog="sweep.py", interrupted=interrupted)


if __name__ == "__main__":
    sys.exit(main())
