"""Generate text from a trained checkpoint, an OpenAI GPT-2 release or a Hugging Face GPT-2 directory.

    python sample.py --out_dir=out/quickstart/sophiag --start="ROMEO:" --num_samples=3
    python sample.py --init_from=gpt2 --start="The meaning of life is"
    python sample.py --init_from=out/hf/sophiag --start="ROMEO:"
    python sample.py --out_dir=out/shakespeare_char_sophiag --start=FILE:prompt.txt   # a character-level run

A checkpoint carries its vocabulary: GPT-2's BPE, or the characters of a character-level dataset.
"""

import argparse
import sys
from pathlib import Path

import torch

from checkpoint import load_model
from errors import UserError, run_cli
from hf import load_gpt2
from vocab import GPT2, GPT2_VOCAB_SIZE, CharCodec, get_gpt2_encoding


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    init_from = "'resume' (newest checkpoint in --out_dir), gpt2* or a Hugging Face GPT-2 directory"
    p.add_argument("--init_from", default="resume", help=init_from)
    p.add_argument("--out_dir", default="out")
    p.add_argument("--start", default="\n", help="prompt text, or FILE:path to read it from a file")
    p.add_argument("--num_samples", type=int, default=3)
    p.add_argument("--max_new_tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=0.8, help="0 is greedy; above 1 more random")
    p.add_argument("--top_k", type=int, default=200, help="sample among the k likeliest tokens (0: all)")
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args(argv)
    if args.num_samples < 1 or args.max_new_tokens < 1 or args.top_k < 0 or args.temperature < 0:
        raise UserError("--num_samples and --max_new_tokens must be >= 1, --top_k and --temperature >= 0")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device={args.device} but CUDA is not available here: use --device=cpu")
    start = args.start
    if start.startswith("FILE:"):
        try:
            start = Path(start[5:]).read_text()
        except OSError as e:
            raise UserError(f"--start={args.start}: cannot read {start[5:]} ({e.strerror})") from None

    if args.init_from == "resume":
        model, vocab, what = load_model(args.out_dir, hint="train first, or pass --init_from=gpt2")
    else:  # load_gpt2 says what a directory lacks
        model, vocab, what = load_gpt2(args.init_from), GPT2, args.init_from
    print(f"loaded {what}", file=sys.stderr)
    model = model.to(args.device).eval()
    if vocab == GPT2:
        enc, n_tokens = get_gpt2_encoding(), GPT2_VOCAB_SIZE
        ids = enc.encode(start, allowed_special={"<|endoftext|>"})
    else:
        enc, n_tokens = CharCodec(vocab["chars"]), len(vocab["chars"])
        ids = enc.encode(start)
    if not ids:
        raise UserError("--start encodes to no tokens: give some prompt text")
    x = torch.tensor(ids, dtype=torch.long, device=args.device)[None, :]
    generator = torch.Generator(device=args.device).manual_seed(args.seed)
    for _ in range(args.num_samples):
        kwargs = dict(temperature=args.temperature, top_k=args.top_k or None, generator=generator, vocab_size=n_tokens)
        y = model.generate(x, args.max_new_tokens, **kwargs)
        print(enc.decode(y[0].tolist()))
        print("---------------")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
