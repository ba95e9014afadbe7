"""Check every checkpoint of a run before relying on it (e.g. after copying a run elsewhere).

    python scripts/tools/verify_checkpoint.py OUT_DIR

Prints one line per checkpoint, newest first: `ok` with its iteration, or `DAMAGED` with the reason
(a checksum mismatch, an unreadable file, non-finite weights or optimizer state). Exit code 0 when
every checkpoint is ok, 1 when any is damaged, 2 when OUT_DIR has none.
"""

import argparse
import sys
import time
from pathlib import Path

from checkpoint import checkpoint_paths, read_checkpoint
from errors import UserError


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path, help="a train.py out_dir")
    args = p.parse_args(argv)
    paths = checkpoint_paths(args.out_dir) if args.out_dir.is_dir() else []
    if not paths:
        print(f"error: no checkpoint in {args.out_dir} (checkpoints are named ckpt_XXXXXXXX.pt)", file=sys.stderr)
        return 2
    damaged = 0
    for path in paths:
        t0 = time.perf_counter()
        try:
            ckpt = read_checkpoint(path)
        except UserError as e:
            damaged += 1
            print(f"DAMAGED  {path}: {e}")
            continue
        took = f"verified in {time.perf_counter() - t0:.2f} s"
        print(f"ok       {path}: iter {ckpt['iter']}, optimizer {ckpt['config']['optimizer_name']}, {took}")
    print(f"{len(paths) - damaged} ok, {damaged} damaged")
    return 1 if damaged else 0


if __name__ == "__main__":
    sys.exit(main())
