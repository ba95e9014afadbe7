"""
Fault injection for train.py: runs train.cli() in this process after test-only patches, so tests
can kill a real training process at a chosen moment (deterministically, not by racing a timer).

    python tests/train_harness.py [options] -- [train.py arguments]

--kill_at_iter K       SIGKILL this process when iteration K is about to start (between checkpoints)
--sigterm_at_iter K    send SIGTERM to this process when iteration K is about to start (pre-emption)
--kill_in_save K       the checkpoint of iteration K writes half of its bytes and fsyncs them, then
                       this process SIGKILLs itself (a kill in the middle of writing; for a sharded
                       checkpoint: in its meta.pt, after the ranks' shards are written)
--kill_after_rename K  SIGKILL right after the checkpoint of iteration K is renamed into place,
                       before it is verified and older ones are pruned
--spike_at_iter K[,K]  a loss spike: the training loss on the batches of iteration K is multiplied by
                       --spike_scale (default 100), and so is its gradient
--poison_at_iter K[,K] a garbage batch: the training batches of iteration K are uniform random tokens
                       (K is the data's iteration, for both: the step's own unless skip_batches or a
                       rollback moved the data on)
--verdicts PATH        append every verdict of the spike guard to PATH, a JSON line each (its window,
                       outlier, value, mean, std, z): scripts/experiments/spike_runs.py measures margins by it
--rank R               the options above act on rank R only (default: every rank)
--first_attempt_only   ... and only on torchrun's first attempt (TORCHELASTIC_RESTART_COUNT unset or 0)

Tests apply the same patches in their own process with patch(parse([...]), monkeypatch.setattr).
"""

import argparse
import io
import json
import os
import signal
import sys
from pathlib import Path

import numpy as np
import torch

import checkpoint
import spikes
import train


def iterations(text):
    return {int(k) for k in text.split(",")}


def parse(argv):
    p = argparse.ArgumentParser()
    p.add_argument("--kill_at_iter", type=int)
    p.add_argument("--sigterm_at_iter", type=int)
    p.add_argument("--kill_in_save", type=int)
    p.add_argument("--kill_after_rename", type=int)
    p.add_argument("--spike_at_iter", type=iterations, default=set())
    p.add_argument("--spike_scale", type=float, default=100.0)
    p.add_argument("--poison_at_iter", type=iterations, default=set())
    p.add_argument("--verdicts")
    p.add_argument("--rank", type=int)
    p.add_argument("--first_attempt_only", action="store_true")
    return p.parse_args(argv)


def main():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parse(argv[:split])
    active = (args.rank is None or int(os.environ.get("RANK", 0)) == args.rank) and not (
        args.first_attempt_only and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"
    )
    if active:
        patch(args)
    sys.argv = [str(Path(train.__file__)), *argv[split + 1 :]]
    sys.exit(train.cli())


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def patch(args, set_attr=setattr):
    train_step, train_loss, get_batch = train.train_step, train.train_loss, train.get_batch
    current = {}

    def faulty_train_step(run, it):
        if it == args.kill_at_iter:
            die()
        if it == args.sigterm_at_iter:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(run, it)

    def spiking_train_loss(model, x, y):
        loss = train_loss(model, x, y)
        return loss * args.spike_scale if current.get("data_it") in args.spike_at_iter else loss

    def poisoned_get_batch(path, seed, stream, it, index, batch_size, block_size, device):
        x, y = get_batch(path, seed, stream, it, index, batch_size, block_size, device)
        if stream == train.TRAIN:
            current["data_it"] = it  # the iteration whose training batches the next losses are of
        if stream != train.TRAIN or it not in args.poison_at_iter:
            return x, y
        vocab = int(np.memmap(path, dtype=np.uint16, mode="r").max()) + 1
        garbage = torch.Generator().manual_seed(it * 1_000_003 + index)
        return tuple(torch.randint(0, vocab, x.shape, generator=garbage).to(device) for _ in range(2))

    read = spikes.SpikeGuard.read

    def recorded_read(guard, name, judged):
        verdict = read(guard, name, judged)
        with open(args.verdicts, "a") as f:
            f.write(json.dumps({"window": name, **verdict._asdict()}) + "\n")
        return verdict

    if args.verdicts:
        set_attr(spikes.SpikeGuard, "read", recorded_read)
    set_attr(train, "train_step", faulty_train_step)
    set_attr(train, "train_loss", spiking_train_loss)
    set_attr(train, "get_batch", poisoned_get_batch)

    save = torch.save

    def half_save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("iter") == args.kill_in_save:
            buf = io.BytesIO()
            save(obj, buf, *a, **kw)
            f.write(buf.getvalue()[: len(buf.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()
        return save(obj, f, *a, **kw)

    set_attr(torch, "save", half_save)

    replace = os.replace
    name = None if args.kill_after_rename is None else f"{checkpoint.CKPT_PREFIX}{args.kill_after_rename:08d}"

    def replace_then_die(src, dst):
        replace(src, dst)
        if Path(dst).name in (name, f"{name}.pt"):  # a sharded checkpoint's directory, or a file
            die()

    set_attr(os, "replace", replace_then_die)


if __name__ == "__main__":
    main()
