"""What a HellaSwag eval costs at a config's model size: milliseconds per example through hellaswag.py's
batched scorer, as train.py runs it (tokens per forward pass = batch_size * block_size), on this machine.

    python scripts/bench/bench_hellaswag.py config/train_tiny_sophiag.py
    python scripts/bench/bench_hellaswag.py config/train_gpt2_small_adamw.py --device=cuda --compile=True

Config files and --key=value overrides are train.py's; the model has the config's shape and random
weights (the cost does not depend on them). Examples come from --data (data/hellaswag/prepare.py's file)
when it exists, else --examples synthetic ones of random tokens with a context of 20-60 and endings of
10-30 tokens. Prints the median of --repeats timed evals (after one untimed warm-up eval), the padded
tokens per example and the forward FLOPs per example (2 x parameters x padded tokens).
"""

import argparse
import statistics
import sys
from contextlib import nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

import hellaswag
import train
from errors import UserError, run_cli
from hellaswag import Example
from model import GPT, PADDED_VOCAB_SIZE, config_from_dict
from scripts.bench import timed


def synthetic_examples(n: int, seed: int = 0) -> list[Example]:
    rng = np.random.default_rng(seed)

    def tokens(lo: int, hi: int) -> np.ndarray:
        return rng.integers(0, hellaswag.GPT2_VOCAB_SIZE, rng.integers(lo, hi + 1))

    return [Example(tokens(20, 60), [tokens(10, 30) for _ in range(4)], int(rng.integers(4))) for _ in range(n)]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(hellaswag.DEFAULT_DATA), help="prepared HellaSwag file, if it exists")
    p.add_argument("--examples", type=int, default=256, help="examples per timed eval")
    p.add_argument("--repeats", type=int, default=3)
    args, train_args = p.parse_known_args(argv)
    if args.examples < 1 or args.repeats < 1:
        raise UserError("--examples and --repeats must be >= 1")
    cfg = train.parse_args(train_args)
    auto = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(auto if cfg.device == "auto" else cfg.device)
    dtype = train.resolve_dtype(cfg.dtype, device)
    autocast = nullcontext() if dtype == "float32" else torch.autocast(device.type, getattr(torch, dtype))
    real = Path(args.data).is_file()
    examples = hellaswag.load(args.data, args.examples) if real else synthetic_examples(args.examples)
    torch.manual_seed(0)
    model = GPT(config_from_dict({**asdict(cfg), "vocab_size": PADDED_VOCAB_SIZE})).to(device)
    scorer = torch.compile(model) if cfg.compile else model
    tokens_per_forward = cfg.batch_size * cfg.block_size
    plan = hellaswag.batches(examples, cfg.block_size, tokens_per_forward)
    padded = sum(4 * per_batch * length for length, per_batch, _ in plan) / len(examples)

    def evaluate() -> None:
        hellaswag.evaluate(scorer, examples, cfg.block_size, tokens_per_forward, autocast, device)

    evaluate()  # warm-up: compilation, allocator
    ms = statistics.median(timed(evaluate, device) for _ in range(args.repeats)) * 1000 / len(examples)
    params = model.num_params(non_embedding=False)
    shape = f"{params / 1e6:.1f}M parameters, block_size {cfg.block_size}, {tokens_per_forward:,} tokens per forward"
    print(f"{shape}, {device} {dtype}{' compiled' if cfg.compile else ''}, {torch.get_num_threads()} threads")
    padding = f"{padded:.0f} padded tokens and {2 * params * padded / 1e9:.2f} GFLOP (forward) per example"
    print(f"{len(examples)} {'HellaSwag' if real else 'synthetic'} examples in {len(plan)} forward passes: {padding}")
    rate = f"{ms * 10042 / 60000:.2f} min for the 10,042 validation examples at this rate"
    print(f"{ms:.2f} ms per example (median of {args.repeats}), {rate}")


if __name__ == "__main__":
    sys.exit(run_cli(main))
