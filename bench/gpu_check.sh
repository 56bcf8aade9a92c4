#!/usr/bin/env bash
# The GPU checks of docs/scaling.md in one command, on one GPU, in about 8 minutes, into one JSON:
#   1. bf16 step time and peak memory against plain SFTTrainer: a Llama-3.2-1B-shaped model, and Llama 3.1 8B's widths
#      with 4 layers (bench/benchmark.py; the ratios are measured in the same run);
#   2. QLoRA (4-bit nf4, LoRA on every linear layer) for 20 steps on a 1B-shaped Llama saved from its config;
#   3. DeepSpeed ZeRO-3 and FSDP2 on one process: 20 steps with a checkpoint at step 10, then a run resumed from it
#      (the duals must be in the checkpoint and the resumed run must end where the uninterrupted one did).
# Checks 2 and 3 run the Llama 3.1 8B recipe itself (recipes/llama31_8b_alpaca.yaml: bf16, activation checkpointing,
# 1,024 tokens, batch 4 × 8, the default layer_loss_budget), the model given by path as the Hub name would be.
# No download: every model is built from a config, the data is the built-in set written as a local JSON file.
#   bash bench/gpu_check.sh [OUT_DIR]               # default outputs/gpu_check; writes OUT_DIR/gpu_check.json
#   bash bench/gpu_check.sh --dry-run [OUT_DIR]     # every command assembled and every config parsed; nothing runs
# Needs `bash scripts/install.sh quant,deepspeed` on the GPU machine.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
DRY=0
if [[ "${1:-}" == "--dry-run" ]]; then DRY=1; shift; fi
OUT=${1:-outputs/gpu_check}
PY=${PYTHON:-python}
mkdir -p "$OUT"
DATA="$OUT/instructions.json"
RECIPE=(recipes/llama_sft.py --config recipes/llama31_8b_alpaca.yaml --model_name_or_path "$OUT/model_1b"
        --dataset_name "$DATA" --report_to none)
STEPS=(--max_steps 20 --save_strategy steps --save_steps 10 --logging_steps 5 --eval_steps 10)
declare -a NAMES=() CMDS=()
add() { NAMES+=("$1"); shift; CMDS+=("$(printf '%q ' "$@")"); }

add bench_1b "$PY" bench/benchmark.py --shapes gpu_1b --variants erm constrained_budget constrained_k1 --repeats 2 \
  --steps 8 --warmup 2 --output "$OUT/bench_1b.json" --no-markdown
add bench_8b_widths "$PY" bench/benchmark.py --shapes gpu --variants erm constrained_budget constrained_k1 --repeats 2 \
  --steps 8 --warmup 2 --output "$OUT/bench_8b_widths.json" --no-markdown
add model_1b "$PY" bench/make_model.py --shape gpu_1b --output "$OUT/model_1b"
add data "$PY" -c "import sys; from hf_cut.data import builtin_instruction_dataset as b; b(seed=0)['train'].to_json(sys.argv[1])" "$DATA"
add qlora accelerate launch --num_processes 1 "${RECIPE[@]}" --use_peft \
  --load_in_4bit --lora_target_modules all-linear --lora_r 16 --lora_alpha 32 --learning_rate 2e-4 --max_steps 20 \
  --logging_steps 5 --save_strategy no --output_dir "$OUT/qlora"
for engine in zero3 fsdp2; do
  launch=(accelerate launch --config_file "accelerate_configs/$engine.yaml" --num_processes 1 --mixed_precision bf16)
  add "${engine}" "${launch[@]}" "${RECIPE[@]}" "${STEPS[@]}" --output_dir "$OUT/$engine"
  add "${engine}_resumed" "${launch[@]}" "${RECIPE[@]}" "${STEPS[@]}" --output_dir "$OUT/${engine}_resumed" \
    --resume_from_checkpoint "$OUT/$engine/checkpoint-10"
done

if ((DRY)); then  # the configs every command names, parsed by their own loaders
  "$PY" - "$OUT" "${NAMES[@]}" <<'PYEOF' || exit 1
import json, sys
from accelerate.commands.config.config_args import load_config_from_file
sys.path.insert(0, "recipes")
import llama_sft
out, names = sys.argv[1], sys.argv[2:]
configs = {}
for engine in ("zero3", "fsdp2"):
    cfg = load_config_from_file(f"accelerate_configs/{engine}.yaml")
    configs[engine] = {"distributed_type": str(cfg.distributed_type), "mixed_precision": str(cfg.mixed_precision)}
import torch
# transformers refuses bf16 where no GPU is: on such a machine the recipe's flags are parsed with the CPU's
device = ["--use_cpu", "false", "--bf16", "true"] if torch.cuda.is_available() else ["--use_cpu", "true", "--bf16", "false"]
parsed = llama_sft.make_parser().parse_args_and_config(
    ["--config", "recipes/llama31_8b_alpaca.yaml", *device, "--max_steps", "20", "--use_peft", "--load_in_4bit",
     "--lora_target_modules", "all-linear"])
configs["recipe"] = {"max_steps": parsed[1].max_steps, "bf16": parsed[1].bf16, "load_in_4bit": parsed[2].load_in_4bit,
                     "layer_loss_budget": parsed[1].layer_loss_budget, "max_length": parsed[1].max_length}
sys.path.insert(0, "bench")
import benchmark  # the benchmark's own parser checks the shapes and variants named above
for shape in ("gpu_1b", "gpu"):
    bench_args = benchmark.parse_args(["--shapes", shape, "--variants", "erm", "constrained_budget", "constrained_k1",
                                       "--repeats", "2", "--steps", "8", "--warmup", "2", "--no-markdown"])
    configs[f"bench_{shape}"] = {"shapes": bench_args.shapes, "variants": bench_args.variants}
json.dump({"dry_run": True, "checks": names, "configs": configs}, open(f"{out}/configs.json", "w"), indent=2)
PYEOF
fi

results=()
for i in "${!NAMES[@]}"; do
  name=${NAMES[$i]} cmd=${CMDS[$i]}
  if ((DRY)); then
    echo "$name: $cmd"; rc=null; seconds=0
  else
    echo "[$(date +%T)] $name"
    start=$(date +%s)
    bash -c "$cmd" >"$OUT/$name.log" 2>&1; rc=$?
    seconds=$(($(date +%s) - start))
  fi
  results+=("$("$PY" -c 'import json,sys; print(json.dumps({"check": sys.argv[1], "command": sys.argv[2], "returncode": json.loads(sys.argv[3]), "seconds": int(sys.argv[4])}))' "$name" "$cmd" "$rc" "$seconds")")
done
"$PY" - "$OUT" "$DRY" "${results[@]}" <<'PYEOF'
import glob, json, os, sys
out, dry, rows = sys.argv[1], sys.argv[2] == "1", [json.loads(r) for r in sys.argv[3:]]
report = {"dry_run": dry, "checks": rows}
if dry:
    report["configs"] = json.load(open(f"{out}/configs.json"))["configs"]
else:
    import torch
    for name in ("bench_1b", "bench_8b_widths"):
        path = f"{out}/{name}.json"
        report[name] = json.load(open(path)).get("summary") if os.path.isfile(path) else None
    for engine in ("zero3", "fsdp2"):
        full, resumed = f"{out}/{engine}/layer_losses.json", f"{out}/{engine}_resumed/layer_losses.json"
        duals_saved = os.path.isfile(f"{out}/{engine}/checkpoint-10/dual_variables.pt")
        entry = {"duals_in_checkpoint": duals_saved}
        if os.path.isfile(full) and os.path.isfile(resumed):
            a, b = json.load(open(full)), json.load(open(resumed))
            entry["max_dual_difference"] = max(abs(x - y) for x, y in zip(a["dual_variables"], b["dual_variables"]))
            entry["eval_loss"] = [a["eval_loss"], b["eval_loss"]]
        report[engine] = entry
    report["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
json.dump(report, open(f"{out}/gpu_check.json", "w"), indent=2)
print(json.dumps({"written": f"{out}/gpu_check.json", "failed": [r["check"] for r in rows if r["returncode"] not in (0, None)]}))
PYEOF
