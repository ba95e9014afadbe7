"""Tokenize+write throughput of our prepare path (data/common.py) vs a plain nanoGPT-style one, on the same local
documents and the same number of worker processes.

    python scripts/bench/bench_prepare.py --num_proc 2 --tokens 20_000_000

No download: documents are runs of speeches of the embedded Shakespeare (the size of short web pages). Both paths
write identical bins (checked); times cover tokenizing and writing only.
"""

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from data.common import SPLITS, split_train_val, write_splits
from data.plays import shakespeare_documents
from vocab import get_gpt2_encoding


def bench_documents(target_tokens: int) -> list[str]:
    """Documents of 5, 10, 20 or 40 consecutive speeches in turn, repeated to ~target_tokens (Shakespeare: ~1.55M)."""
    speeches = [s for scene in shakespeare_documents() for s in scene.split("\n\n")]
    docs, i, sizes = [], 0, (5, 10, 20, 40)
    while i < len(speeches):
        n = sizes[len(docs) % len(sizes)]
        docs.append("\n\n".join(speeches[i : i + n]))
        i += n
    return docs * max(1, round(target_tokens / 1.55e6))


def nanogpt_style(splits: Any, out_dir: Path, num_proc: int) -> None:
    """Baseline, nanoGPT's openwebtext prepare before batched writes: `datasets.map` to Python lists of ids, then one
    memmap slice assignment per document."""
    enc = get_gpt2_encoding()

    def process(example: dict) -> dict:
        ids = enc.encode_ordinary(example["text"])
        ids.append(enc.eot_token)
        return {"ids": ids, "len": len(ids)}

    for split in SPLITS:
        kwargs = dict(remove_columns=["text"], num_proc=num_proc, load_from_cache_file=False)
        tokenized = splits[split].map(process, desc=f"baseline map {split}", **kwargs)
        total = int(np.sum(tokenized["len"], dtype=np.uint64))
        arr = np.memmap(Path(out_dir) / f"{split}.bin", dtype=np.uint16, mode="w+", shape=(total,))
        idx = 0
        for example in tokenized:
            arr[idx : idx + example["len"]] = example["ids"]
            idx += example["len"]
        arr.flush()
        del arr


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    both = "worker processes for both paths (default min(2, cores))"
    parser.add_argument("--num_proc", type=int, default=min(2, os.cpu_count() or 1), help=both)
    parser.add_argument("--tokens", type=int, default=20_000_000, help="approximate corpus size")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each path, alternating (best and median)")
    parser.add_argument("--work_dir", default=None, help="scratch folder (default: a temp dir)")
    args = parser.parse_args(argv)
    import datasets

    seconds = {"ours": [], "nanoGPT-style": []}
    with tempfile.TemporaryDirectory(dir=args.work_dir) as tmp:
        tmp = Path(tmp)
        os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf_cache")  # nothing left in ~/.cache
        docs = bench_documents(args.tokens)
        (tmp / "docs.jsonl").write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
        ds = datasets.load_dataset("json", data_files=str(tmp / "docs.jsonl"), cache_dir=str(tmp / "hf_cache"))["train"]
        splits = split_train_val(ds, test_size=0.0005, seed=2357)
        for _ in range(args.repeats):
            t0 = time.time()
            kwargs = dict(source="bench", split_seed=2357, test_size=0.0005, num_proc=args.num_proc)
            meta = write_splits(splits, tmp / "ours", **kwargs)
            seconds["ours"].append(time.time() - t0)
            (tmp / "baseline").mkdir(exist_ok=True)
            t0 = time.time()
            nanogpt_style(splits, tmp / "baseline", args.num_proc)
            seconds["nanoGPT-style"].append(time.time() - t0)
        tokens = sum(meta["splits"][s]["tokens"] for s in SPLITS)
        for s in SPLITS:
            same = (tmp / "ours" / f"{s}.bin").read_bytes() == (tmp / "baseline" / f"{s}.bin").read_bytes()
            assert same, f"{s}.bin differs between the two paths"

    each = f"{os.cpu_count()} cores, {args.repeats} runs each"
    print(f"\n{len(docs):,} documents, {tokens:,} tokens, num_proc={args.num_proc}, {each}; identical bins")
    print(f"{'':15}{'best s':>8}{'tokens/s':>14}{'median s':>10}{'tokens/s':>14}")
    for name, runs in seconds.items():
        best, median = min(runs), float(np.median(runs))
        print(f"{name:15}{best:8.2f}{tokens / best:14,.0f}{median:10.2f}{tokens / median:14,.0f}")
    best = min(seconds["nanoGPT-style"]) / min(seconds["ours"])
    median = float(np.median(seconds["nanoGPT-style"]) / np.median(seconds["ours"]))
    print(f"speed-up (ours vs nanoGPT-style): {best:.2f}x best-to-best, {median:.2f}x median")


if __name__ == "__main__":
    main()
