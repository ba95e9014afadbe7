"""Export the newest checkpoint of a run as a Hugging Face transformers GPT-2 model (docs/huggingface.md).

    python scripts/tools/export_hf.py out/quickstart/sophiag out/hf/sophiag

HF_DIR gets config.json, model.safetensors and GPT-2's tokenizer files: transformers, lm-evaluation-harness and
`sample.py`/`train.py --init_from=HF_DIR` load it offline. Its logits over the 50257 real tokens equal the run's.
"""

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from checkpoint import load_model
from errors import UserError, run_cli
from hf import save_hf
from vocab import GPT2, describe


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out_dir", help="a run's out_dir (its newest valid checkpoint is exported)")
    p.add_argument("hf_dir", help="the directory to write the Hugging Face model into")
    p.add_argument("--force", action="store_true", help="replace an earlier export's files in a non-empty hf_dir")
    args = p.parse_args(argv)
    out_dir, hf_dir = Path(args.out_dir), Path(args.hf_dir)
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is not a directory: pass the out_dir of a training run")
    if hf_dir.is_dir() and any(hf_dir.iterdir()) and not args.force:
        fix = "pass --force to replace an earlier export there, or choose another directory"
        raise UserError(f"{hf_dir} is not empty: {fix}")
    model, vocab, what = load_model(out_dir)
    if vocab != GPT2:
        fix = f"needs GPT-2's vocabulary and tokenizer; sample it with `python sample.py --out_dir={out_dir}`"
        raise UserError(f"{what} is a character-level model, with {describe(vocab)}: a Hugging Face GPT-2 export {fix}")
    print(f"exporting {what}, {model.num_params() / 1e6:.2f}M parameters")
    try:
        hf_dir.parent.mkdir(parents=True, exist_ok=True)
        # Written next to hf_dir first and moved in file by file: a failed export leaves hf_dir as it was.
        staging = Path(tempfile.mkdtemp(prefix=f".{hf_dir.name}.", dir=hf_dir.parent))
    except OSError as e:
        raise UserError(f"cannot write to {hf_dir} ({e.strerror}): choose another directory") from None
    try:
        files = save_hf(model, staging)
        hf_dir.mkdir(exist_ok=True)
        for f in files:
            os.replace(f, hf_dir / f.name)
    except OSError as e:
        raise UserError(f"writing {hf_dir} failed ({e.strerror or e}): check the disk and permissions") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for f in files:
        print(f"wrote {hf_dir / f.name} ({(hf_dir / f.name).stat().st_size:,} bytes)")


def cli(argv: list[str] | None = None) -> int:
    return run_cli(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
