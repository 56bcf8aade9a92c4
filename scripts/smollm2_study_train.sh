#!/usr/bin/env bash
# SmolLM2 study, training runs (serial: 2 cores)
cd /work/main; . .venv/bin/activate; export HF_HUB_OFFLINE=1
R="python recipes/llama_sft.py --config recipes/smollm2_sft.yaml"
run() { name=$1; shift; [ -f outputs/smollm2/$name/layer_losses.json ] && return; /usr/bin/time -f "$name wall %e s" $R --output_dir outputs/smollm2/$name "$@" > logs/$name.log 2>&1; tail -1 logs/$name.log >> logs/walltimes.txt; }
run erm_s0 --constrained false --seed 0
run cut_b0.1_s0 --resilience_coef 0.1 --seed 0
run cut_b1_s0 --resilience_coef 1.0 --seed 0
run hard_s0 --resilience_coef inf --seed 0
run ds_s0 --constrained false --deep_supervision_weight 1.0 --seed 0
run erm_s1 --constrained false --seed 1
run ds_s1 --constrained false --deep_supervision_weight 1.0 --seed 1
