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
--rank R               the options above act on rank R only (default: every rank)
--first_attempt_only   ... and only on torchrun's first attempt (TORCHELASTIC_RESTART_COUNT unset or 0)
"""
import argparse
import io
import os
import signal
import sys
from pathlib import Path

import torch

import checkpoint
import train


def main():
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    p = argparse.ArgumentParser()
    p.add_argument("--kill_at_iter", type=int)
    p.add_argument("--sigterm_at_iter", type=int)
    p.add_argument("--kill_in_save", type=int)
    p.add_argument("--kill_after_rename", type=int)
    p.add_argument("--rank", type=int)
    p.add_argument("--first_attempt_only", action="store_true")
    args = p.parse_args(argv[:split])
    active = ((args.rank is None or int(os.environ.get("RANK", 0)) == args.rank)
              and not (args.first_attempt_only and os.environ.get("TORCHELASTIC_RESTART_COUNT", "0") != "0"))
    if active:
        patch(args)
    sys.argv = [str(Path(train.__file__)), *argv[split + 1:]]
    sys.exit(train.cli())


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def patch(args):
    train_step = train.train_step

    def faulty_train_step(run, it):
        if it == args.kill_at_iter:
            die()
        if it == args.sigterm_at_iter:
            os.kill(os.getpid(), signal.SIGTERM)
        return train_step(run, it)

    train.train_step = faulty_train_step

    save = torch.save

    def half_save(obj, f, *a, **kw):
        if isinstance(obj, dict) and obj.get("iter") == args.kill_in_save:
            buf = io.BytesIO()
            save(obj, buf, *a, **kw)
            f.write(buf.getvalue()[:len(buf.getvalue()) // 2])
            f.flush()
            os.fsync(f.fileno())
            die()
        return save(obj, f, *a, **kw)

    torch.save = half_save

    replace = os.replace
    name = None if args.kill_after_rename is None else f"{checkpoint.CKPT_PREFIX}{args.kill_after_rename:08d}"

    def replace_then_die(src, dst):
        replace(src, dst)
        if Path(dst).name in (name, f"{name}.pt"):  # a sharded checkpoint's directory, or a file
            die()

    os.replace = replace_then_die


if __name__ == "__main__":
    main()
