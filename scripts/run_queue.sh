#!/usr/bin/env bash
# Train the runs listed in a job file, one after another, skipping those already trained (an interrupted study
# resumes) and those another worker of the same file has claimed (start several workers to use several cores).
#   bash scripts/run_queue.sh JOBS_FILE OUT_DIR        # JOBS_FILE: one run a line, "name --flag value …"
# Each run is `recipes/llama_sft.py --config $CONFIG --output_dir OUT_DIR/name --flags…`; lines starting with # are
# skipped. The file is re-read after every run, so runs can be appended while the workers go.
# SKIP_FILE=F also skips the runs named in F (one name a line): runs whose results are kept elsewhere.
set -uo pipefail
cd "$(dirname "$0")/.."
jobs=$1 out=$2
config=${CONFIG:-recipes/smollm2_sft.yaml}
mkdir -p "$out"
while true; do
  picked=""
  while read -r name flags; do
    [[ -z "$name" || "$name" == \#* ]] && continue
    [ -f "$out/$name/layer_losses.json" ] && continue
    [ -n "${SKIP_FILE:-}" ] && grep -qxF -- "$name" "$SKIP_FILE" && continue
    mkdir "$out/$name.claim" 2>/dev/null || continue
    picked=$name
    break
  done < "$jobs"
  [ -z "$picked" ] && exit 0
  flags=$(grep -E "^$picked( |$)" "$jobs" | head -1 | cut -s -d' ' -f2-)
  echo "[$(date +%T)] start $picked $flags"
  # shellcheck disable=SC2086
  if python recipes/llama_sft.py --config "$config" --output_dir "$out/$picked" $flags >"$out/$picked.log" 2>&1; then
    echo "[$(date +%T)] done $picked"
  else
    echo "[$(date +%T)] FAILED $picked (see $out/$picked.log)"
  fi
done
