#!/usr/bin/env bash
# Train the three models the evaluation compares, with the same budget, for each training seed given:
# constrained, plain ERM (constrained=False) and deep supervision (deep_supervision_weight=1.0), on the built-in data.
#   bash scripts/train_baselines.sh 0 1 2        # -> outputs/seed{0,1,2}/{constrained,erm,deep_supervision}
# Extra flags for every run go in EXTRA, e.g. EXTRA="--noise_gamma 0.5" bash scripts/train_baselines.sh 0
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=${ROOT:-outputs}
for seed in "${@:-0}"; do
  for run in "constrained:--constrained true" "erm:--constrained false" \
             "deep_supervision:--constrained false --deep_supervision_weight 1.0"; do
    name=${run%%:*}
    # shellcheck disable=SC2086
    accelerate launch recipes/llama_sft.py --config recipes/llama_sft.yaml ${run#*:} --seed "$seed" \
      --output_dir "$ROOT/seed$seed/$name" ${EXTRA:-}
  done
done
