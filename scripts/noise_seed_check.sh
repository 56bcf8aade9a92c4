#!/usr/bin/env bash
# A second draw of the evaluation noise for the noise-training study's headline models
# (docs/results/noise_training.md): noise-trained ERM, deep supervision and the constraint at γ_train 1 (60 steps,
# seeds 0–2; 240 steps, the budget), the constraint and deep supervision at γ_train 0.5 (the study's one frontier win
# over a baseline) and ERM at γ_train 0.5 and 0.75 (ERM's frontier next to the constraint's best points), swept with
# noise seed 1 and merged with their committed noise seed 0. The 60-step models are trained again where they are not
# on disk (`WORKERS` runs side by side); every model is also swept again with noise seed 0 at γ 0 and 1 and checked
# against the committed sweep (a re-run reproduces it). Output in $DOCS: the merged sweep, table.md (one table per
# noise seed and one of both), differences.md (the comparisons the results page draws, under each draw), frontier/
# (the frontier with the re-drawn models averaged over both draws), reproduction.md. Cost on 2 cores: ~35 min per nine
# 60-step runs trained, then ~3 min per model (7 γ, one noise seed) and ~1 min for its check; SWEEPERS sweeps run side
# by side (default 2).
#   bash scripts/noise_seed_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1
OUT=${OUT:-outputs/smollm2_noise}
STUDY=${STUDY:-docs/smollm2/noise_training}
DOCS=${DOCS:-$STUDY/noise_seeds}
WORKERS=${WORKERS:-2}
SWEEPERS=${SWEEPERS:-2}
RUNS=${RUNS:-"erm_g1_s0 cut_g1_s0 ds_g1_s0 erm_g1_s1 cut_g1_s1 ds_g1_s1 erm_g1_s2 cut_g1_s2 ds_g1_s2
  erm_steps240_g1_s0 cut_steps240_g1_s0 erm_steps240_g1_s1 cut_steps240_g1_s1 erm_steps240_g1_s2 cut_steps240_g1_s2
  ds_steps240_g1_s0 ds_steps240_g1_s1 cut_g0.5_s0 ds_g0.5_s0 cut_g0.5_s1 ds_g0.5_s1 cut_g0.5_s2 ds_g0.5_s2
  erm_g0.5_s0 erm_g0.5_s1 erm_g0.5_s2 erm_g0.75_s0 erm_g0.75_s1 erm_g0.75_s2"}
# shellcheck source=scripts/noise_training_lib.sh
source scripts/noise_training_lib.sh  # the study's γ grid, sweep settings and run labels

mkdir -p "$OUT" "$DOCS"
# train what is missing: the study's own job lines, restricted to $RUNS
grep -E "^($(echo $RUNS | tr ' ' '|')) " scripts/noise_training_jobs.txt > "$OUT/noise_seed_jobs.txt"
for ((w = 1; w <= WORKERS; w++)); do
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 bash scripts/run_queue.sh "$OUT/noise_seed_jobs.txt" "$OUT" &
  sleep 2
done
wait

sweep() {  # name: noise seed 1 at every γ of the study, then the noise-seed-0 check at γ 0 and 1
  local name=$1 label
  label=$(label "$name")
  # shellcheck disable=SC2086
  [ -f "$OUT/sweeps_noise_seed1/$name/ood_sweep.json" ] || OMP_NUM_THREADS=1 python eval/ood_sweep.py \
    --model "$OUT/$name" --labels "$label" --gammas $GAMMAS --seeds 1 "${SWEEP_ARGS[@]}" \
    --output_dir "$OUT/sweeps_noise_seed1/$name" > "$OUT/sweeps_noise_seed1.$name.log" 2>&1
  [ -f "$OUT/sweeps_reproduce/$name/ood_sweep.json" ] || OMP_NUM_THREADS=1 python eval/ood_sweep.py \
    --model "$OUT/$name" --labels "$label" --gammas 0 1 --seeds 0 "${SWEEP_ARGS[@]}" \
    --output_dir "$OUT/sweeps_reproduce/$name" > "$OUT/sweeps_reproduce.$name.log" 2>&1
}
running=0
for name in $RUNS; do
  [ -f "$OUT/$name/layer_losses.json" ] || { echo "not trained: $name (see $OUT/$name.log)"; continue; }
  sweep "$name" &
  running=$((running + 1))
  if ((running >= SWEEPERS)); then wait -n; running=$((running - 1)); fi
done
wait

shopt -s nullglob
labels=(); for name in $RUNS; do labels+=("$(label "$name")"); done
# the committed noise seed 0 (the study and its budget) and the new noise seed 1, each model's under its own path
python eval/merge_sweeps.py "$STUDY" "$STUDY/budget" "$OUT"/sweeps_noise_seed1/* --output_dir "$DOCS" \
  --keep "${labels[@]}"
python eval/compare_sweeps.py "$STUDY" "$STUDY/budget" --against "$OUT"/sweeps_reproduce/* \
  | tee "$DOCS/reproduction.md"
for seeds in 0 1 "0 1"; do
  echo "## noise seeds $seeds"
  echo
  # shellcheck disable=SC2086
  python eval/report.py "$DOCS" --by_training_seed --rows models --noise_seeds $seeds
  echo
done | tee "$DOCS/table.md"
pairs=("ERM γ=1 vs constrained γ=1" "constrained γ=1 vs deep supervision γ=1"
       "ERM 240 steps γ=1 vs constrained 240 steps γ=1" "constrained 240 steps γ=1 vs deep supervision 240 steps γ=1"
       "constrained γ=0.5 vs deep supervision γ=0.5" "ERM γ=0.75 vs constrained γ=0.5" "ERM γ=0.5 vs constrained γ=0.5")
for seeds in 0 1 "0 1"; do  # A − B in points, combined spread in brackets, * beyond it
  echo "## noise seeds $seeds"
  echo
  # shellcheck disable=SC2086
  python eval/report.py "$DOCS" --differences "${pairs[@]}" --noise_seeds $seeds
  echo
done | tee "$DOCS/differences.md"
# the frontier again, each re-drawn model averaged over both draws (the study's other models keep noise seed 0; the
# budget runs stay out, as in the study's own frontier)
mapfile -t study_labels < <(python -c 'import json, sys
print("\n".join(sorted({r["model"] for r in json.load(open(sys.argv[1]))["records"]})))' "$STUDY/ood_sweep.json")
python eval/merge_sweeps.py "$STUDY" "$DOCS" --keep "${study_labels[@]}" --output_dir "$OUT/frontier_both_draws"
python eval/frontier.py "$OUT/frontier_both_draws" --output_dir "$DOCS/frontier" --mild 0.5 --strong 1.5 \
  --floor "$(dirname "$STUDY")/floor.json" \
  --title "SmolLM2-135M-Instruct: the frontier, re-drawn models averaged over noise seeds 0 and 1"
