#!/usr/bin/env bash
# From a fresh clone: .venv, the character-level Shakespeare corpus, a baby GPT trained with Sophia-G and
# with AdamW side by side (one thread each, same data and seed, each at its tuned lr), then the comparison
# (out/quickstart/compare.png and its table). Minutes on 2 CPU cores, no GPU, no download beyond the package
# index; a rerun continues finished work. Extra arguments go to both runs, e.g. --max_iters=200.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$SECONDS
source scripts/setup_env.sh
out=out/quickstart
opts=(sophiag adamw)

echo "== [1/3] preparing the character-level Shakespeare corpus (data/shakespeare_char)"
python data/shakespeare_char/prepare.py

echo "== [2/3] training the baby GPT with ${opts[*]} side by side (config/train_shakespeare_char_*.py, ~4 minutes)"
pids=()
for opt in "${opts[@]}"; do
    mkdir -p "$out/$opt"
    OMP_NUM_THREADS=1 python train.py "config/train_shakespeare_char_$opt.py" --out_dir="$out/$opt" \
        --init_from=auto "$@" > "$out/$opt/train.log" 2>&1 &
    pids+=($!)
done
running() { for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && return 0; done; return 1; }
declare -A shown  # each run's last progress line, printed again only when it changes
while running; do
    sleep 20
    for opt in "${opts[@]}"; do
        line=$(grep -E '^(iter|eval|done|error)' "$out/$opt/train.log" | tail -n 1)
        [[ "$line" == "${shown[$opt]:-}" ]] || echo "   $opt: $line"
        shown[$opt]=$line
    done
done
for i in "${!opts[@]}"; do
    if ! wait "${pids[$i]}"; then
        echo "error: the ${opts[$i]} run failed; its log: $out/${opts[$i]}/train.log" >&2
        tail -n 5 "$out/${opts[$i]}/train.log" >&2
        exit 1
    fi
done

echo "== [3/3] comparing"
python scripts/experiments/compare.py "$out/adamw" "$out/sophiag" --out "$out/compare.png" --csv "$out/compare.csv"
echo "== done in $(( (SECONDS - start) / 60 )) min $(( (SECONDS - start) % 60 )) s: $out/compare.png, $out/compare.csv"
