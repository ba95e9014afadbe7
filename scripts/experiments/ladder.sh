#!/usr/bin/env bash
# The size ladder: does Sophia-G's gain over AdamW grow with model size? The character-level
# Shakespeare recipe (config/train_shakespeare_char_{adamw,sophiag}.py: 1000 steps of 32 x 64
# characters) at three widths and depths, each optimizer lr-tuned at every size on seed 0, then
# seed 1 at the selected lr (scripts/experiments/sweep.py --tune_seeds 1). The two optimizers'
# sweeps run side by side, one thread each. Then scripts/experiments/regime_plot.py draws Sophia-G's
# steps to AdamW's final val loss, as a ratio to AdamW's steps, against the model's parameter count.
#
#     bash scripts/experiments/ladder.sh [OUT]        # default out/ladder; rerunning resumes
#     SIZES="s l" bash scripts/experiments/ladder.sh  # some sizes only (the figure needs all three)
#
# Sizes (non-embedding parameters): s = 2 x 64 (0.10M), m = 4 x 128 (0.79M, the four-way
# comparison's model), l = 6 x 160 (1.85M).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/ladder}
mkdir -p "$out"
export OMP_NUM_THREADS=1
read -r -a sizes <<< "${SIZES:-s m l}"
declare -A shape=([s]="n_layer=2 n_head=2 n_embd=64" [m]="n_layer=4 n_head=4 n_embd=128"
                  [l]="n_layer=6 n_head=5 n_embd=160")
declare -A adamw_lrs=([s]=1e-2,3e-2,1e-1 [m]=3e-3,1e-2,3e-2 [l]=1e-3,3e-3,1e-2,3e-2)
declare -A sophiag_lrs=([s]=1e-4,3e-4,1e-3,3e-3,1e-2 [m]=3e-4,1e-3,3e-3 [l]=1e-4,3e-4,1e-3)
configs=(config/train_shakespeare_char_adamw.py config/train_shakespeare_char_sophiag.py)

for size in "${sizes[@]}"; do
    echo "== size $size (${shape[$size]}): adamw lr ${adamw_lrs[$size]} | sophiag lr ${sophiag_lrs[$size]}"
    # shellcheck disable=SC2086  # the shape is several KEY=VALUE words
    common=(--seeds 0 1 --tune_seeds 1 --out "$out/$size" --set ${shape[$size]})
    python scripts/experiments/sweep.py --configs "${configs[0]}" --lrs "adamw=${adamw_lrs[$size]}" "${common[@]}" \
        > "$out/$size.adamw.log" 2>&1 &
    adamw=$!
    python scripts/experiments/sweep.py --configs "${configs[1]}" --lrs "sophiag=${sophiag_lrs[$size]}" --baseline sophiag \
        "${common[@]}" > "$out/$size.sophiag.log" 2>&1 &
    sophiag=$!
    wait $adamw || echo "   some adamw runs failed: $out/$size.adamw.log"
    wait $sophiag || echo "   some sophiag runs failed: $out/$size.sophiag.log"
    python scripts/experiments/sweep.py --configs "${configs[@]}" --lrs "adamw=${adamw_lrs[$size]}" \
        "sophiag=${sophiag_lrs[$size]}" "${common[@]}" --analyze_only > "$out/$size.summary.txt"
    echo "   $out/$size.summary.txt"
done
python scripts/experiments/regime_plot.py "$out/s" "$out/m" "$out/l" --out "$out/ladder.png"
