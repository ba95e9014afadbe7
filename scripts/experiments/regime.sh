#!/usr/bin/env bash
# The regime map (docs/results.md): Sophia-G against AdamW along training length and batch size (more micro-steps of
# the same micro-batch) on the character-level recipe; s, m and l are ladder.sh's sizes. Each cell is one sweep.py per
# optimizer (the lr grid on seed 0, then seed 1 at the selected lr), the two side by side, one thread each.
#     bash scripts/experiments/regime.sh [OUT]              # default out/regime; rerunning resumes
#     CELLS="s1 s4" bash scripts/experiments/regime.sh      # some cells only
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-out/regime}
mkdir -p "$out"
export OMP_NUM_THREADS=1
read -r -a cells <<< "${CELLS:-s1 s4 m1 m2k m8k m32k s16}"
s="n_layer=2 n_head=2 n_embd=64"
m="n_layer=4 n_head=4 n_embd=128"
length() { echo "max_iters=$1 warmup_iters=$(($1 / 10)) eval_interval=$(($1 / 40))"; }  # a run of $1 steps
batch() { echo "total_batch_size=$1 hess_total_batch_size=$1"; }  # $1 sequences of 64 characters per step
declare -A sets=([s1]="$s $(length 1000)" [s4]="$s $(length 4000)" [s16]="$s $(length 16000)"
                 [m1]="$m $(length 1000)" [m2k]="$m $(length 4000)"
                 [m8k]="$m $(length 1000) $(batch 128)" [m32k]="$m $(length 250) $(batch 512)"
                 [s]="$s" [m]="$m" [l]="n_layer=6 n_head=5 n_embd=160")
declare -A adamw_lrs=([s1]=1e-2,3e-2,1e-1 [s4]=3e-3,1e-2,3e-2,1e-1 [s16]=1e-3,3e-3,1e-2,3e-2
                      [m1]=3e-3,1e-2,3e-2 [m2k]=3e-3,1e-2,3e-2 [m8k]=3e-3,1e-2,3e-2 [m32k]=3e-3,1e-2,3e-2
                      [s]=1e-2,3e-2,1e-1 [m]=3e-3,1e-2,3e-2 [l]=1e-3,3e-3,1e-2,3e-2)
declare -A sophiag_lrs=([s1]=1e-4,3e-4,1e-3,3e-3 [s4]=1e-4,3e-4,1e-3,3e-3 [s16]=3e-4,1e-3,3e-3,1e-2
                        [m1]=3e-4,1e-3,3e-3 [m2k]=3e-4,1e-3,3e-3 [m8k]=3e-4,1e-3,3e-3 [m32k]=3e-4,1e-3,3e-3
                        [s]=1e-4,3e-4,1e-3,3e-3,1e-2 [m]=3e-4,1e-3,3e-3 [l]=1e-4,3e-4,1e-3)
configs=(config/train_shakespeare_char_adamw.py config/train_shakespeare_char_sophiag.py)

for cell in "${cells[@]}"; do
    echo "== $(date '+%H:%M:%S') cell $cell (${sets[$cell]}): adamw lr ${adamw_lrs[$cell]} | sophiag lr ${sophiag_lrs[$cell]}"
    # shellcheck disable=SC2086  # the settings are several KEY=VALUE words
    common=(--seeds 0 1 --tune_seeds 1 --out "$out/$cell" --set ${sets[$cell]})
    python scripts/experiments/sweep.py --configs "${configs[0]}" --lrs "adamw=${adamw_lrs[$cell]}" "${common[@]}" \
        > "$out/$cell.adamw.log" 2>&1 &
    adamw=$!
    python scripts/experiments/sweep.py --configs "${configs[1]}" --lrs "sophiag=${sophiag_lrs[$cell]}" --baseline sophiag \
        "${common[@]}" > "$out/$cell.sophiag.log" 2>&1 &
    sophiag=$!
    wait $adamw || echo "   some adamw runs failed: $out/$cell.adamw.log"
    wait $sophiag || echo "   some sophiag runs failed: $out/$cell.sophiag.log"
    python scripts/experiments/sweep.py --configs "${configs[@]}" --lrs "adamw=${adamw_lrs[$cell]}" \
        "sophiag=${sophiag_lrs[$cell]}" "${common[@]}" --analyze_only > "$out/$cell.summary.txt"
    echo "   $out/$cell.summary.txt"
done
