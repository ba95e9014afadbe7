#!/usr/bin/env bash
# The size ladder: does Sophia-G's gain over AdamW grow with model size? The character-level Shakespeare
# recipe at three sizes (the cells s, m and l of scripts/experiments/regime.sh: each optimizer lr-tuned
# per size on seed 0, then seed 1 at the selected lr), then scripts/experiments/regime_plot.py's figure
# against the parameter count (docs/results.md).
#
#     bash scripts/experiments/ladder.sh [OUT]        # default out/ladder; rerunning resumes
#     SIZES="s l" bash scripts/experiments/ladder.sh  # some sizes only (the figure needs all three)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/ladder}
CELLS="${SIZES:-s m l}" bash scripts/experiments/regime.sh "$out"
python scripts/experiments/regime_plot.py "$out/s" "$out/m" "$out/l" --out "$out/ladder.png"
