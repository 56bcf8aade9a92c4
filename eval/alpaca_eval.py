"""
AlpacaEval win rate against the noise level γ of the input embeddings: a model's outputs at each γ judged pairwise
(by alpaca-eval) against a reference, with the same noise seed throughout (see hf_cut.evaluation.alpaca).

Writes OUT/outputs_gamma{γ}.json (AlpacaEval's format), OUT/reference_outputs_gamma{γ}.json when the reference is a
model, OUT/judge_gamma{γ}/ (alpaca-eval's annotations and leaderboard), OUT/alpaca_eval.json (win rate ± standard
error per γ) and OUT/win_rate.png. Needs `pip install "alpaca-eval>=0.6.6" "setuptools<81"`.

# The paper's comparison: constrained against unconstrained, both perturbed at each γ, AlpacaEval 2's judge
```bash
export OPENAI_API_KEY=...
python eval/alpaca_eval.py     --model outputs/llama31-8b-alpaca-cut     --reference outputs/llama31-8b-alpaca-erm     --gammas 0 0.5 1 1.5     --max_new_tokens 1024     --output_dir outputs/alpaca_eval_cut_vs_erm
```

# Offline, on the tiny built-in models: built-in held-out prompts, hf-cut's local judge (exercises the path only)
```bash
python eval/alpaca_eval.py     --model outputs/llama_sft_tiny     --reference outputs/llama_sft_tiny_erm     --gammas 0 1.5     --instructions builtin     --limit 50     --max_new_tokens 16     --annotators_config local     --output_dir outputs/alpaca_eval_tiny
```

# SmolLM2 fine-tuned on the built-in prompt/completion data: its training prompts, judged by exact match
```bash
python eval/alpaca_eval.py --model outputs/smollm2/cut_s0 --reference outputs/smollm2/erm_s0     --gammas 0 0.5 1 1.5 2 --instructions builtin --limit 100 --max_new_tokens 24 --batch_size 16     --prompt_format training --annotators_config local-exact --output_dir outputs/smollm2_generation_s0
```

# Against a fixed set of outputs (AlpacaEval format), e.g. the reference model's clean outputs
```bash
python eval/alpaca_eval.py --model outputs/llama_sft_tiny     --reference outputs/alpaca_eval_tiny/reference_outputs_gamma0.json     --gammas 0 0.5 1 1.5 2 --instructions builtin --limit 50 --max_new_tokens 16     --annotators_config local --output_dir outputs/alpaca_eval_tiny_vs_clean
```
"""

import os
import sys

# this file shares its name with the alpaca_eval package: keep its folder off the import path
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

from hf_cut.cli.alpaca import main, make_parser, check_args, parse_args, run  # noqa: E402, F401  (`hf-cut alpaca-eval`)

if __name__ == "__main__":
    run()
