"""Turn a sharded (FSDP) checkpoint into a one-file checkpoint, the format of DDP runs.

    python scripts/tools/convert_checkpoint.py out/gpt2_xl_sophiag/ckpt_00010000 xl_10000.pt

The output (weights and optimizer state whole, and the rest) resumes a DDP run as an out_dir's ckpt_XXXXXXXX.pt. The
source is verified first; the conversion runs in one process, in the CPU memory of the model and its optimizer state.
"""

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from checkpoint import is_sharded, load_sharded, read_checkpoint, read_sharded_meta, write_file
from errors import UserError, run_cli
from model import GPT, GPTConfig
from optimizers import make_optimizer
from train import TrainConfig


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", type=Path, help="a sharded checkpoint directory, e.g. out/run/ckpt_00010000")
    p.add_argument("dst", type=Path, help="the .pt file to write")
    args = p.parse_args(argv)
    if not (args.src.exists() and is_sharded(args.src)):
        raise UserError(f"{args.src} is not a sharded checkpoint directory (ckpt_XXXXXXXX/ in an FSDP run's out_dir)")
    if args.dst.exists():
        raise UserError(f"{args.dst} exists: choose another output file or delete it")
    if not args.dst.parent.is_dir():
        raise UserError(f"{args.dst.parent} is not a directory: create it first")
    meta = read_sharded_meta(args.src)
    model = GPT(GPTConfig(**meta["model_args"]))
    cfg = TrainConfig(**{f.name: meta["config"][f.name] for f in fields(TrainConfig) if f.name in meta["config"]})
    optimizer = make_optimizer(cfg, model, model.lm_head.weight.device)
    load_sharded(args.src, model, optimizer)
    write_file({"model": model.state_dict(), "optimizer": optimizer.state_dict(), **meta}, args.dst)
    read_checkpoint(args.dst)  # verify what was written
    print(f"wrote {args.dst}: iteration {meta['iter']}, {args.dst.stat().st_size / 1e6:.1f} MB")


if __name__ == "__main__":
    sys.exit(run_cli(main))
