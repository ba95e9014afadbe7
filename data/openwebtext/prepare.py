"""Prepare OpenWebText (or any Hub dataset, or local jsonl/json/parquet/txt files) as GPT-2 tokens.

    python data/openwebtext/prepare.py                      # Hub OpenWebText, ~9B tokens
    python data/openwebtext/prepare.py --data_path my_docs/ --out_dir data/mine
    python data/openwebtext/prepare.py --max_docs 10000     # a quick sample

The train/val split is nanoGPT's, so validation losses compare with nanoGPT's (docs/data.md).
"""

import argparse
import os
import sys

from data.common import add_num_proc_arg, documents_to_prepare, prepare_parser, run_cli, split_train_val, write_splits
from errors import UserError

HUB_DATASET = "Skylion007/openwebtext"
TEST_SIZE = 0.0005  # nanoGPT's: ~4k of ~8M documents
SEED = 2357  # nanoGPT's


def describe_source(args: argparse.Namespace, local: tuple | None) -> str:
    """A string naming everything that determines the outputs (it is stored in meta.json)."""
    if local:
        source = f"local:{os.path.abspath(args.data_path)}"
        source += f" sample_by={args.sample_by}" if local[0] == "text" else ""
    else:
        source = f"hub:{args.dataset}" + (f" name={args.name}" if args.name else "")
        source += f"@{args.revision}" if args.revision else ""
    source += f" split={args.split}" if args.split != "train" else ""
    source += f" text_column={args.text_column}" if args.text_column != "text" else ""
    source += f" max_docs={args.max_docs}" if args.max_docs else ""
    return source


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__)
    add_num_proc_arg(parser)
    src = parser.add_argument_group("input (default: the Hub's OpenWebText)")
    src.add_argument("--dataset", default=None, help=f"Hub dataset name (default {HUB_DATASET})")
    src.add_argument("--name", default=None, help="Hub dataset config name, for datasets that have several")
    src.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    src.add_argument("--data_path", default=None, help="local .jsonl/.json/.parquet/.txt file, or a folder of them")
    sample_by = "for .txt files: one document per file (default), paragraph or line"
    src.add_argument("--sample_by", default="document", choices=("document", "paragraph", "line"), help=sample_by)
    src.add_argument("--split", default="train", help="split to read (default train)")
    src.add_argument("--text_column", default="text", help="column holding the documents")
    src.add_argument("--max_docs", type=int, default=None, help="use only the first N documents (a quick sample)")
    args = parser.parse_args(argv)
    if args.data_path and args.dataset:
        raise UserError("pass either --dataset (Hub) or --data_path (local files), not both")
    args.dataset = args.dataset or HUB_DATASET
    if args.max_docs is not None and args.max_docs < 2:
        raise UserError(f"--max_docs must be >= 2 (one train and one val document), got {args.max_docs}")

    docs, source = documents_to_prepare(args, describe_source)
    if docs is None:
        return
    splits = split_train_val(docs, test_size=TEST_SIZE, seed=SEED)
    kwargs = dict(split_seed=SEED, test_size=TEST_SIZE, text_column=args.text_column, num_proc=args.num_proc)
    write_splits(splits, args.out_dir, source=source, **kwargs)


if __name__ == "__main__":
    sys.exit(run_cli(main))
