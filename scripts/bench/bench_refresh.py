"""What each way of refreshing Sophia-G's Hessian estimate costs, as overhead on training.

    python scripts/bench/bench_refresh.py config/train_tiny_sophiag.py
    python scripts/bench/bench_refresh.py config/train_gpt2_small_sophiag.py --batch_size=12 --total_batch_size=12

The refresh runs once every hess_interval steps, so a refresh of R ms on a step of S ms costs
R / (hess_interval * S) of training time: that share is printed as "overhead" for each lever.
Everything runs on one model set up by train.setup() and through train.py's own functions:

  step                 train.train_step(): forward+backward on the training batch and the Sophia-G step
  fresh batch of B     train.refresh_hessian() with hess_total_batch_size=B: a forward and a
                       backward on B fresh sequences (the official recipe: B = the training batch)
  training forward, B  the labels sampled from the first B sequences' logits of the training forward
                       itself, and a second backward (retain_graph) before the training one: the time
                       this adds to a plain forward+backward (train.py does not do this: measured here
                       to decide whether it should)
  sampling             sophia.gnb_loss's label sampling against torch.multinomial on the same logits

Medians over --repeats; the entries take turns so that a change of load hits all of them alike.
"""
import argparse
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

import train
from errors import UserError, run_cli
from parallel import setup_distributed
from sophia import gnb_loss


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--fractions", default="1,2,4,8", help="Hessian batches: the training batch divided by these")
    args, train_args = parser.parse_known_args(sys.argv[1:] if argv is None else argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    scratch = tempfile.TemporaryDirectory(prefix="bench_refresh_")
    base = train_args + ["--wandb_log=False", "--init_from=scratch",
                         "--optimizer_name=sophiag", "--compile=False"]
    cfg = train.parse_args(base + [f"--out_dir={scratch.name}"])
    if cfg.total_batch_size != cfg.batch_size:
        raise UserError("bench_refresh times one micro-batch per step: set total_batch_size = batch_size")
    dist = setup_distributed(cfg)
    if dist.ddp:
        raise UserError("bench_refresh runs in one process: run it with python, not torchrun")
    sizes = []
    for text in args.fractions.split(","):
        f = int(text) if text.strip().isdigit() else 0
        if f < 1 or cfg.batch_size % f:
            raise UserError(f"--fractions: batch_size={cfg.batch_size} is not divisible by {text!r}")
        sizes.append(cfg.batch_size // f)
    runs = {}
    for b in sizes:
        runs[b], _, metrics = train.setup(train.parse_args(base + [f"--hess_total_batch_size={b}",
                                                                   f"--out_dir={scratch.name}/{b}"]),
                                          dist, lambda *a: None)
        if metrics is not None:
            metrics.close()
    run = runs[sizes[0]]
    model, device = run.model, dist.device
    x, y = train.get_batch(run.train_path, cfg.seed, train.TRAIN, 0, 0, cfg.batch_size, cfg.block_size, device)

    def plain():
        with run.autocast:
            loss = model(x, y)[1]
        loss.backward()
        model.zero_grad(set_to_none=True)

    def from_training_forward(b):
        def fn():
            with run.autocast:
                logits, loss = model(x, y)
                estimator = gnb_loss(logits[:b])
            estimator.backward(retain_graph=True)
            run.optimizer.update_hessian(num_tokens=b * cfg.block_size)
            model.zero_grad(set_to_none=True)
            loss.backward()
            model.zero_grad(set_to_none=True)
        return fn

    with torch.no_grad(), run.autocast:
        logits = model(x)[0].float().view(-1, model.config.vocab_size)
    entries = {"step": lambda: train.train_step(run, 0)}
    entries.update({f"fresh batch of {b}": (lambda r: lambda: train.refresh_hessian(r, 0))(runs[b]) for b in sizes})
    entries["plain forward+backward"] = plain
    entries.update({f"training forward, {b}": from_training_forward(b) for b in sizes})
    entries["sampling: gnb_loss"] = lambda: gnb_loss(logits)
    entries["sampling: torch.multinomial"] = lambda: torch.multinomial(F.softmax(logits, dim=-1), 1)
    for fn in entries.values():  # warm-up
        fn()
    times = {label: [] for label in entries}
    for r in range(args.repeats):
        labels = list(entries)[r % len(entries):] + list(entries)[:r % len(entries)]
        for label in labels:
            times[label].append(timed(entries[label], device))
    ms = {label: 1000 * statistics.median(t) for label, t in times.items()}
    step = ms["step"] * cfg.hess_interval
    print(f"{cfg.batch_size} x {cfg.block_size} tokens per step, {device}, hess_interval={cfg.hess_interval}, "
          f"medians of {args.repeats}")
    print(f"{'':<32} {'ms':>9} {'overhead':>9}")
    print(f"{'step':<32} {ms['step']:>9.1f}")
    for b in sizes:
        print(f"{f'fresh batch of {b}':<32} {ms[f'fresh batch of {b}']:>9.1f} "
              f"{100 * ms[f'fresh batch of {b}'] / step:>8.1f}%")
    for b in sizes:
        extra = ms[f"training forward, {b}"] - ms["plain forward+backward"]
        print(f"{f'training forward, {b}':<32} {extra:>9.1f} {100 * extra / step:>8.1f}%")
    for label in ("sampling: gnb_loss", "sampling: torch.multinomial"):
        print(f"{label:<32} {ms[label]:>9.1f} {100 * ms[label] / step:>8.1f}%")
    scratch.cleanup()


if __name__ == "__main__":
    sys.exit(run_cli(main))
