"""Check every checkpoint of a run before relying on it (e.g. after copying it elsewhere), or with --bench measure what
each checkpoint format costs (docs/reliability.md).

    python scripts/tools/verify_checkpoint.py OUT_DIR
    python scripts/tools/verify_checkpoint.py --bench --sizes tiny --repeats 5

OUT_DIR: one line per checkpoint, newest first, `ok` or `DAMAGED` with the reason. Exit code 0 when every checkpoint is
ok, 1 when any is damaged, 2 when OUT_DIR has none. --bench: a GPT with Sophia-G state saved, loaded and verified in
one process as a resume does, and saved and loaded by DCP; the files are in the page cache. Prints medians of --repeats.
"""

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.state_dict import get_state_dict

import checkpoint as ck
from errors import UserError
from model import GPT, GPTConfig
from sophia import SophiaG

SIZES = {"tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64)}
SIZES["124M"] = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024)


def verify(out_dir: Path) -> int:
    paths = ck.checkpoint_paths(out_dir) if out_dir.is_dir() else []
    if not paths:
        print(f"error: no checkpoint in {out_dir} (checkpoints are named ckpt_XXXXXXXX.pt)", file=sys.stderr)
        return 2
    damaged = 0
    for path in paths:
        t0 = time.perf_counter()
        try:
            ckpt = ck.read_checkpoint(path)
        except UserError as e:
            damaged += 1
            print(f"DAMAGED  {path}: {e}")
            continue
        took = f"verified in {time.perf_counter() - t0:.2f} s"
        print(f"ok       {path}: iter {ckpt['iter']}, optimizer {ckpt['config']['optimizer_name']}, {took}")
    print(f"{len(paths) - damaged} ok, {damaged} damaged")
    return 1 if damaged else 0


def bench(sizes: list[str], repeats: int) -> None:
    columns = ("save", "load", "verify", "DCP save", "DCP load")
    print(f"{'size':6} {'file':>9} " + " ".join(f"{c:>9}" for c in columns) + f" {'verify/load':>12}")
    warnings.filterwarnings("ignore", message="torch.distributed is disabled")  # one process, on purpose
    for size in sizes:
        torch.manual_seed(0)
        model = GPT(GPTConfig(**SIZES[size]))
        optimizer = SophiaG(model.parameters(), lr=1e-4)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times: list[list[float]] = []
        with tempfile.TemporaryDirectory() as tmp:
            for i in range(repeats):
                t = [time.perf_counter()]
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter": i}
                path = ck.save_checkpoint(state | {"model_args": SIZES[size]}, Path(tmp), i, keep_last=1)
                t.append(time.perf_counter())
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                t.append(time.perf_counter())
                assert ck.verify_file(path) is None
                assert not ck.non_finite(ck.state_tensors(ckpt["model"], ckpt["optimizer"]))
                t.append(time.perf_counter())
                model_state, optimizer_state = get_state_dict(model, optimizer)
                dcp.save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=f"{tmp}/{i}", no_dist=True)
                t.append(time.perf_counter())
                ck.load_sharded(Path(f"{tmp}/{i}"), model, optimizer)
                t.append(time.perf_counter())
                times.append([b - a for a, b in zip(t, t[1:])])
                del ckpt
            med = [statistics.median(column) for column in zip(*times)]
            cells = " ".join(f"{m:8.3f}s" for m in med)
            print(f"{size:6} {path.stat().st_size / 1e6:7.0f}MB {cells} {med[2] / med[1]:11.2f}x")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", type=Path, nargs="?", help="a train.py out_dir")
    p.add_argument("--bench", action="store_true", help="measure the formats instead")
    p.add_argument("--sizes", default="tiny,124M", help=f"--bench: comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--repeats", type=int, default=3, help="--bench: timed repeats")
    args = p.parse_args(argv)
    if args.bench == (args.out_dir is not None):
        p.error("give an OUT_DIR or --bench")
    if args.bench:
        bench(args.sizes.split(","), args.repeats)
        return 0
    return verify(args.out_dir)


if __name__ == "__main__":
    sys.exit(main())
