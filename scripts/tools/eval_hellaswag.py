"""HellaSwag accuracy of a finished model (a run's newest checkpoint, a Hugging Face GPT-2 directory or an OpenAI GPT-2
release), or with --bench (first) what an eval costs at a config's model size (docs/evals.md).

    python scripts/tools/eval_hellaswag.py out/gpt2_small_sophiag          # a run's out_dir
    python scripts/tools/eval_hellaswag.py out/hf/sophiag                  # scripts/tools/export_hf.py's output
    python scripts/tools/eval_hellaswag.py gpt2 --device cuda --compile    # OpenAI's 124M
    python scripts/tools/eval_hellaswag.py --bench config/train_tiny_sophiag.py --examples 128

--bench: ms per example through the batched scorer as train.py runs it, for a model of the config's shape (train.py's
arguments) with random weights, on --data if it exists, else on --examples synthetic ones: the median of --repeats
timed evals after a warm-up, and the padded tokens and forward FLOPs per example.
"""

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

import hellaswag
import train
from checkpoint import load_model
from errors import UserError, run_cli
from hf import RELEASES
from model import GPT, PADDED_VOCAB_SIZE, config_from_dict


def autocast_for(dtype: str, device: torch.device) -> tuple[str, Any]:
    dtype = train.resolve_dtype(dtype, device)
    return dtype, nullcontext() if dtype == "float32" else torch.autocast(device.type, getattr(torch, dtype))


def synthetic_examples(n: int) -> list[hellaswag.Example]:
    rng = np.random.default_rng(0)

    def tokens(lo: int, hi: int) -> np.ndarray:
        return rng.integers(0, hellaswag.GPT2_VOCAB_SIZE, rng.integers(lo, hi + 1))

    return [
        hellaswag.Example(tokens(20, 60), [tokens(10, 30) for _ in range(4)], int(rng.integers(4))) for _ in range(n)
    ]


def bench(argv: list[str]) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(hellaswag.DEFAULT_DATA), help="prepared HellaSwag file, if it exists")
    p.add_argument("--examples", type=int, default=256, help="examples per timed eval")
    p.add_argument("--repeats", type=int, default=3)
    args, train_args = p.parse_known_args(argv)
    if args.examples < 1 or args.repeats < 1:
        raise UserError("--examples and --repeats must be >= 1")
    cfg = train.parse_args(train_args)
    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
    dtype, autocast = autocast_for(cfg.dtype, device)
    real = Path(args.data).is_file()
    examples = hellaswag.load(args.data, args.examples) if real else synthetic_examples(args.examples)
    torch.manual_seed(0)
    model = GPT(config_from_dict({**asdict(cfg), "vocab_size": PADDED_VOCAB_SIZE})).to(device)
    scorer = torch.compile(model) if cfg.compile else model
    tokens_per_forward = cfg.batch_size * cfg.block_size
    plan = hellaswag.batches(examples, cfg.block_size, tokens_per_forward)
    padded = sum(4 * per_batch * length for length, per_batch, _ in plan) / len(examples)
    seconds = []
    for _ in range(args.repeats + 1):  # the first is a warm-up: compilation, allocator
        t0 = time.perf_counter()
        hellaswag.evaluate(scorer, examples, cfg.block_size, tokens_per_forward, autocast, device)  # synchronizes
        seconds.append(time.perf_counter() - t0)
    ms = statistics.median(seconds[1:]) * 1000 / len(examples)
    params = model.num_params(non_embedding=False)
    shape = f"{params / 1e6:.1f}M parameters, block_size {cfg.block_size}, {tokens_per_forward:,} tokens per forward"
    print(f"{shape}, {device} {dtype}{' compiled' if cfg.compile else ''}, {torch.get_num_threads()} threads")
    padding = f"{padded:.0f} padded tokens and {2 * params * padded / 1e9:.2f} GFLOP (forward) per example"
    print(f"{len(examples)} {'HellaSwag' if real else 'synthetic'} examples in {len(plan)} forward passes: {padding}")
    rate = f"{ms * 10042 / 60000:.2f} min for the 10,042 validation examples at this rate"
    print(f"{ms:.2f} ms per example (median of {args.repeats}), {rate}")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--bench"]:
        return bench(argv[1:])
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a run's out_dir, a Hugging Face GPT-2 directory, or gpt2 / gpt2-medium / ...")
    p.add_argument("--data", default=str(hellaswag.DEFAULT_DATA), help="the file data/hellaswag/prepare.py wrote")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    dtype = "autocast dtype (auto: as train.py, bfloat16 on a CUDA GPU that has it, else float32)"
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help=dtype)
    p.add_argument("--batch_tokens", type=int, default=4096, help="padded tokens per forward pass")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (pays off on a GPU)")
    args = p.parse_args(argv)
    if args.limit is not None and args.limit < 1 or args.batch_tokens < 1:
        raise UserError("--limit and --batch_tokens must be >= 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device={args.device} but CUDA is not available here: use --device=cpu")
    examples = hellaswag.load(args.data, args.limit)
    hint = "pass a run's out_dir (checkpoints are written at every eval_interval), a Hugging Face GPT-2 directory"
    model, vocab, what = load_model(args.source, hint=f"{hint} or one of {', '.join(RELEASES)}")
    hellaswag.check_vocab(vocab, what, "evaluate a model trained on GPT-2 tokens")
    model.to(args.device)
    device = torch.device(args.device)
    dtype, autocast = autocast_for(args.dtype, device)
    scorer = torch.compile(model) if args.compile else model
    t0 = time.perf_counter()
    scores = hellaswag.evaluate(scorer, examples, model.config.block_size, args.batch_tokens, autocast, device)
    seconds = time.perf_counter() - t0
    acc = f"acc {scores['eval/hellaswag_acc']:.4f} acc_norm {scores['eval/hellaswag_acc_norm']:.4f}"
    took = f"{seconds:.1f} s, {1000 * seconds / len(examples):.1f} ms/example, {args.device} {dtype}"
    print(f"{what}: {acc} on {len(examples):,} examples ({took}{' compiled' if args.compile else ''})")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
