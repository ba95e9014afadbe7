"""Prepare HellaSwag's validation set (rowanz/hellaswag, 10,042 examples) as GPT-2 tokens, once.

    python data/hellaswag/prepare.py                          # download -> data/hellaswag/val.npz
    python data/hellaswag/prepare.py --data_path hellaswag_val.jsonl   # a local copy

val.npz: `tokens` (uint16), `offsets` (int64 (n, 6): per example the starts of its context and 4 endings and the end
of the last), `labels` (int8); meta.json is written last (docs/evals.md). hellaswag.py scores it.
"""

import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path

import numpy as np

from atomic import atomic_write
from data.common import DTYPE, make_out_dir, prepare_parser, read_meta, run_cli, write_meta
from errors import UserError
from vocab import get_gpt2_encoding

URL = "https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl"
JSONL = "hellaswag_val.jsonl"


def read_examples(path: Path) -> list[tuple[str, list[str], int]]:
    """(context, 4 endings, label) of every line of a HellaSwag jsonl."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read --data_path {path} ({e.strerror}); pass HellaSwag's {JSONL}") from None
    examples = []
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        try:
            ex = json.loads(line)
        except ValueError as e:
            raise UserError(f"{where}: not valid JSON ({e}); fix or delete that line") from None
        ctx, endings, label = (ex.get(k) for k in ("ctx", "endings", "label")) if isinstance(ex, dict) else [None] * 3
        four = isinstance(endings, list) and len(endings) == 4 and all(isinstance(e, str) for e in endings)
        if not (isinstance(ctx, str) and four and isinstance(label, int)):
            fix = "is this HellaSwag's jsonl?"
            raise UserError(f"{where}: an example needs ctx (text), endings (4 texts) and label (0-3); {fix}")
        if not 0 <= label <= 3:
            raise UserError(f"{where}: label {label} is not the index of one of the 4 endings (0-3)")
        if not ctx.strip():
            raise UserError(f"{where}: the context (ctx) is empty: nothing to condition on")
        for k, ending in enumerate(endings):
            if not ending.strip():
                raise UserError(f"{where}: ending {k} has no tokens of its own (empty text): nothing to score")
        examples.append((ctx, endings, label))
    if not examples:
        raise UserError(f"{path} holds no examples; pass HellaSwag's {JSONL}")
    return examples


def tokenize(examples: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """tokens (uint16), offsets (n, 6) and labels (int8) of the examples, as val.npz stores them."""
    enc = get_gpt2_encoding()
    pieces = [enc.encode_ordinary(text) for ctx, endings, _ in examples for text in [ctx] + [" " + e for e in endings]]
    bounds = np.cumsum([0] + [len(ids) for ids in pieces], dtype=np.int64)  # 5 pieces per example
    offsets = np.stack([bounds[i : i + 6] for i in range(0, len(pieces), 5)])
    labels = np.array([label for _, _, label in examples], dtype=np.int8)
    return np.array([t for ids in pieces for t in ids], dtype=DTYPE), offsets, labels


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__, outputs="val.npz and meta.json")
    parser.add_argument("--data_path", default=None, help=f"a local HellaSwag jsonl (default: download {URL})")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.data_path and not Path(args.data_path).is_file():
        raise UserError(f"--data_path {args.data_path} does not exist; pass HellaSwag's {JSONL}")
    source = f"local:{os.path.abspath(args.data_path)}" if args.data_path else URL
    npz = out_dir / "val.npz"
    try:
        meta = read_meta(out_dir)
    except UserError:  # unreadable: prepared again
        meta = None
    if meta and meta.get("source") == source and npz.is_file() and not args.overwrite:
        done = f"{out_dir} is already prepared from {source!r} ({meta['examples']:,} examples)"
        print(f"{done}; pass --overwrite to redo it")
        return
    make_out_dir(out_dir)
    path = Path(args.data_path or out_dir / JSONL)
    if not path.is_file():  # no --data_path: the download, once
        print(f"downloading {URL}")
        try:
            with urllib.request.urlopen(URL, timeout=60) as response, atomic_write(path, "wb") as f:
                f.write(response.read())
        except OSError as e:
            fix = "download it elsewhere and pass --data_path FILE"
            raise UserError(f"cannot download {URL} ({getattr(e, 'reason', e)}); {fix}") from None
    examples = read_examples(path)
    tokens, offsets, labels = tokenize(examples)
    (out_dir / "meta.json").unlink(missing_ok=True)  # outputs are complete exactly when meta.json exists
    try:
        with atomic_write(npz, "wb") as f:
            np.savez(f, tokens=tokens, offsets=offsets, labels=labels)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        meta = dict(source=source, sha256=sha256, tokenizer="gpt2", examples=len(examples), tokens=len(tokens))
        write_meta(out_dir, meta)
    except OSError as e:
        raise UserError(f"writing {out_dir} failed ({e.strerror}); free up space or choose another --out_dir") from None
    print(f"wrote {npz}: {len(examples):,} examples, {len(tokens):,} tokens (source: {source})")


if __name__ == "__main__":
    sys.exit(run_cli(main))
