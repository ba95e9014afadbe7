"""Prepare FineWeb-Edu (HuggingFaceFW/fineweb-edu, config sample-10BT by default) as GPT-2 tokens.

    python data/fineweb_edu/prepare.py                         # Hub, sample-10BT -> data/fineweb_edu/
    python data/fineweb_edu/prepare.py --name sample-100BT     # another config of the dataset
    python data/fineweb_edu/prepare.py --data_path shards/     # local parquet shards of the dataset
    python data/fineweb_edu/prepare.py --max_docs 100000       # a quick sample

Validation is the first --val_docs documents in the published order, train the rest: no shuffling, no seed.
"""

import argparse
import os
import sys

from data.common import add_num_proc_arg, documents_to_prepare, prepare_parser, run_cli, write_splits
from errors import UserError

HUB_DATASET = "HuggingFaceFW/fineweb-edu"
DEFAULT_NAME = "sample-10BT"
VAL_DOCS = 10_000


def describe_source(args: argparse.Namespace, local: tuple | None) -> str:
    """A string naming everything that determines the outputs (it is stored in meta.json)."""
    hub = f"hub:{HUB_DATASET} name={args.name}" + (f"@{args.revision}" if args.revision else "")
    source = (f"local:{os.path.abspath(args.data_path)}" if local else hub) + f" val_docs={args.val_docs}"
    return source + (f" max_docs={args.max_docs}" if args.max_docs else "")


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__)
    add_num_proc_arg(parser)
    src = parser.add_argument_group(f"input (default: the Hub's {HUB_DATASET}, {DEFAULT_NAME})")
    name = f"config of {HUB_DATASET} (default {DEFAULT_NAME}; e.g. sample-100BT)"
    src.add_argument("--name", default=DEFAULT_NAME, help=name)
    src.add_argument("--revision", default=None, help="Hub revision (branch, tag or commit)")
    local = "local parquet shards of the dataset (a file or a folder), instead of the Hub"
    src.add_argument("--data_path", default=None, help=local)
    src.add_argument("--max_docs", type=int, default=None, help="use only the first N documents (a quick sample)")
    val_docs = f"the first N documents are the validation split (default {VAL_DOCS:,})"
    parser.add_argument("--val_docs", type=int, default=VAL_DOCS, help=val_docs)
    args = parser.parse_args(argv)
    if args.val_docs < 1:
        raise UserError(f"--val_docs must be >= 1, got {args.val_docs}")
    if args.max_docs is not None and args.max_docs <= args.val_docs:
        fix = f"after the --val_docs={args.val_docs} validation documents: raise --max_docs or lower --val_docs"
        raise UserError(f"--max_docs={args.max_docs} leaves no training documents {fix}")
    args.dataset, args.split, args.sample_by = HUB_DATASET, "train", "document"  # what documents_to_prepare reads

    docs, source = documents_to_prepare(args, describe_source)
    if docs is None:
        return
    if len(docs) <= args.val_docs:
        fix = "lower --val_docs or give it more documents"
        raise UserError(f"the data has {len(docs):,} documents, not more than --val_docs={args.val_docs:,}: {fix}")
    splits = {"train": docs.select(range(args.val_docs, len(docs))), "val": docs.select(range(args.val_docs))}
    write_splits(splits, args.out_dir, source=source, split_seed=None, test_size=args.val_docs, num_proc=args.num_proc)


if __name__ == "__main__":
    sys.exit(run_cli(main))
