"""What checkpoint verification costs at load time, as a ratio to the load itself.

    python scripts/bench/bench_checkpoint.py                 # tiny (7M) and GPT-2 small (124M) shapes
    python scripts/bench/bench_checkpoint.py --sizes tiny --repeats 5

For each size: a GPT with Sophia-G state (m and h for every parameter) is saved with train.py's
checkpoint writer; then, alternating, the plain load (torch.load + load_state_dict into the model
and the optimizer, as a resume does) and the verification that a resume adds (every zip entry's
CRC-32, then the finiteness of the loaded weights and optimizer state) are timed. The file is in
the page cache for both, so the ratio compares work, not disk speed. Prints medians and the ratio.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch

from checkpoint import non_finite, save_checkpoint, state_tensors, verify_file
from model import GPT, GPTConfig
from sophia import SophiaG

SIZES = {"tiny": dict(n_layer=4, n_head=4, n_embd=128, block_size=64)}
SIZES["124M"] = dict(n_layer=12, n_head=12, n_embd=768, block_size=1024)


def model_and_optimizer(shape: dict) -> tuple[GPT, SophiaG]:
    torch.manual_seed(0)
    model = GPT(GPTConfig(**shape))
    optimizer = SophiaG(model.parameters(), lr=1e-4)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return model, optimizer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,124M", help=f"comma-separated, of {', '.join(SIZES)}")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args(argv)
    print(f"{'size':6} {'file':>9} {'load':>9} {'verify':>9} {'verify/load':>12}")
    for size in args.sizes.split(","):
        model, optimizer = model_and_optimizer(SIZES[size])
        with tempfile.TemporaryDirectory() as tmp:
            state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "iter": 1}
            state["model_args"] = SIZES[size]
            path = save_checkpoint(state, Path(tmp), 1, keep_last=1)
            loads, verifies = [], []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
                model.load_state_dict(ckpt["model"])
                optimizer.load_state_dict(ckpt["optimizer"])
                loads.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                assert verify_file(path) is None
                assert not non_finite(state_tensors(ckpt["model"], ckpt["optimizer"]))
                verifies.append(time.perf_counter() - t0)
                del ckpt
            load, verify = statistics.median(loads), statistics.median(verifies)
            print(f"{size:6} {path.stat().st_size / 1e6:7.0f}MB {load:8.3f}s {verify:8.3f}s {verify / load:11.2f}x")


if __name__ == "__main__":
    main()
