#!/usr/bin/env bash
# The size ladder: does Sophia-G's gain over AdamW grow with model size? The character-level
# Shakespeare recipe (config/train_shakespeare_char_{adamw,sophiag}.py: 1000 steps of 32 x 64
# characters) at three widths and depths, each optimizer lr-tuned at every size on seed 0, then
# seed 1 at the selected lr: the cells s, m and l of scripts/experiments/regime.sh. Then
# scripts/experiments/regime_plot.py draws Sophia-G's steps to AdamW's final val loss, as a ratio to
# AdamW's steps, against the model's parameter count.
#
#     bash scripts/experiments/ladder.sh [OUT]        # default out/ladder; rerunning resumes
#     SIZES="s l" bash scripts/experiments/ladder.sh  # some sizes only (the figure needs all three)
#
# Sizes (non-embedding parameters): s = 2 x 64 (0.10M), m = 4 x 128 (0.79M, the four-way
# comparison's model), l = 6 x 160 (1.85M).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/ladder}
CELLS="${SIZES:-s m l}" bash scripts/experiments/regime.sh "$out"
python scripts/experiments/regime_plot.py "$out/s" "$out/m" "$out/l" --out "$out/ladder.png"
