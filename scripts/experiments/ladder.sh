#!/usr/bin/env bash
# The size ladder (docs/results.md): does Sophia-G's gain over AdamW grow with model size? regime.sh's cells s, m
# and l (the character-level recipe at three sizes), then regime_plot.py's figure against the parameter count.
#     bash scripts/experiments/ladder.sh [OUT]        # default out/ladder; rerunning resumes
#     SIZES="s l" bash scripts/experiments/ladder.sh  # some sizes only (the figure needs all three)
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/ladder}
CELLS="${SIZES:-s m l}" bash scripts/experiments/regime.sh "$out"
python scripts/experiments/regime_plot.py "$out/s" "$out/m" "$out/l" --out "$out/ladder.png"
