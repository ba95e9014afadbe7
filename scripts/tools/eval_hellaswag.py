"""HellaSwag accuracy of a finished model: a run's newest checkpoint, a Hugging Face GPT-2 directory or an
OpenAI GPT-2 release (the release needs the Hugging Face cache or the Hub).

    python scripts/tools/eval_hellaswag.py out/gpt2_small_sophiag          # a run's out_dir
    python scripts/tools/eval_hellaswag.py out/hf/sophiag                  # scripts/tools/export_hf.py's output
    python scripts/tools/eval_hellaswag.py gpt2 --device cuda --compile    # OpenAI's 124M

Scores the examples that data/hellaswag/prepare.py wrote (hellaswag.py defines the scorer) and
prints acc, acc_norm, the number of examples and the time taken.
"""

import argparse
import sys
import time
from contextlib import nullcontext

import torch

import hellaswag
import train
from checkpoint import load_model
from errors import UserError, run_cli
from hf import RELEASES


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="a run's out_dir, a Hugging Face GPT-2 directory, or gpt2 / gpt2-medium / ...")
    p.add_argument("--data", default=str(hellaswag.DEFAULT_DATA), help="the file data/hellaswag/prepare.py wrote")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    dtype = "autocast dtype (auto: as train.py, bfloat16 on a CUDA GPU that has it, else float32)"
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16"), help=dtype)
    batch = "padded tokens per forward pass (examples are grouped up to this many)"
    p.add_argument("--batch_tokens", type=int, default=4096, help=batch)
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
    dtype = train.resolve_dtype(args.dtype, device)
    autocast = nullcontext() if dtype == "float32" else torch.autocast(device.type, getattr(torch, dtype))
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
