#!/usr/bin/env bash
# Early exit from the SmolLM2 models of scripts/smollm2_study.sh (README "Early exit"; docs/early_exit/): held-out
# quality of every truncation for each kind (mean ± std over training seeds), and self-speculative decoding
# (transformers' assistant_early_exit) for seed 0 of ERM, deep supervision and constrained: the fastest k of 15, 20,
# 25, 28 on 4 held-out prompts, then measured on 24 others against plain greedy decoding. ~20 min on 2 CPU cores;
# time it on a quiet machine (tokens per second).
#   bash scripts/early_exit_study.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=${OUT:-outputs/smollm2}
models=(smollm2) labels=(pretrained)
for kind in erm:ERM ds:"deep supervision" cut:constrained; do
  for s in 0 1 2; do models+=("$OUT/${kind%%:*}_s$s"); labels+=("${kind#*:}"); done
done
models+=("$OUT/hard_s0" "$OUT/cut_b1_s0") labels+=("hard (paper)" "β = 1")
python eval/early_exit.py --model "${models[@]}" --labels "${labels[@]}" --limit 64 \
  --speculative --speculative_labels ERM "deep supervision" constrained --early_exits 15 20 25 28 \
  --select_prompts 4 --prompts 24 --max_new_tokens 32 --save_truncated outputs/early_exit \
  --title "SmolLM2-135M-Instruct: held-out quality of the first k layers" --output_dir docs/early_exit
