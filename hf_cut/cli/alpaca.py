"""
AlpacaEval win rate against the noise level γ of the input embeddings: a model's outputs at each γ judged pairwise
(by alpaca-eval) against a reference, with the same noise seed throughout (see hf_cut.evaluation.generation.alpaca).

Writes OUT/outputs_gamma{γ}.json (AlpacaEval's format), OUT/reference_outputs_gamma{γ}.json when the reference is a
model, OUT/judge_gamma{γ}/ (alpaca-eval's annotations and leaderboard), OUT/alpaca_eval.json (win rate ± standard
error per γ) and OUT/win_rate.png. Needs `pip install "alpaca-eval>=0.6.6" "setuptools<81"`.

# The paper's comparison: constrained against unconstrained, both perturbed at each γ, AlpacaEval 2's judge
```bash
export OPENAI_API_KEY=...
python eval/alpaca_eval.py \
    --model outputs/llama31-8b-alpaca-cut \
    --reference outputs/llama31-8b-alpaca-erm \
    --gammas 0 0.5 1 1.5 \
    --max_new_tokens 1024 \
    --output_dir outputs/alpaca_eval_cut_vs_erm
```

# Offline, on the tiny built-in models: built-in held-out prompts, hf-cut's local judge (exercises the path only)
```bash
python eval/alpaca_eval.py \
    --model outputs/llama_sft_tiny \
    --reference outputs/llama_sft_tiny_erm \
    --gammas 0 1.5 \
    --instructions builtin \
    --limit 50 \
    --max_new_tokens 16 \
    --annotators_config local \
    --output_dir outputs/alpaca_eval_tiny
```

# SmolLM2 fine-tuned on the built-in prompt/completion data: its training prompts, judged by exact match
```bash
python eval/alpaca_eval.py --model outputs/smollm2/cut_s0 --reference outputs/smollm2/erm_s0 \
    --gammas 0 0.5 1 1.5 2 --instructions builtin --limit 100 --max_new_tokens 24 --batch_size 16 \
    --prompt_format training --annotators_config local-exact --output_dir outputs/smollm2_generation_s0
```

# Against a fixed set of outputs (AlpacaEval format), e.g. the reference model's clean outputs
```bash
python eval/alpaca_eval.py --model outputs/llama_sft_tiny \
    --reference outputs/alpaca_eval_tiny/reference_outputs_gamma0.json \
    --gammas 0 0.5 1 1.5 2 --instructions builtin --limit 50 --max_new_tokens 16 \
    --annotators_config local --output_dir outputs/alpaca_eval_tiny_vs_clean
```
"""

import argparse
import json
import os
import sys

# This script shares its name with the alpaca_eval package: keep its own directory off the import path


def main(args: argparse.Namespace) -> dict:
    from hf_cut.evaluation.generation.alpaca import alpaca_eval_sweep

    summary = alpaca_eval_sweep(
        args.model,
        args.reference,
        args.gammas,
        args.output_dir,
        seed=args.seed,
        limit=args.limit,
        annotators_config=args.annotators_config,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        instructions=args.instructions,
        noise_mean=args.noise_mean,
        prompt_format=args.prompt_format,
    )
    print(f"{'γ':>6} | {'win rate %':>10} | {'std err':>7} | {'n':>4} | {'EM model %':>10} | {'EM ref %':>8}")
    for row in summary["results"]:
        se, em, ref_em = row.get("standard_error"), row.get("exact_match"), row.get("reference_exact_match")
        print(f"{row['gamma']:>6g} | {row['win_rate']:>10.2f} | {'' if se is None else f'{se:.2f}':>7} | "
              f"{row.get('n_total', ''):>4} | {'' if em is None else f'{em:.1f}':>10} | "
              f"{'' if ref_em is None else f'{ref_em:.1f}':>8}")
    print(json.dumps({"written": [f"{args.output_dir}/alpaca_eval.json", summary["plot"]]}))
    return summary


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", required=True, help="saved model directory (or Hub name)")
    parser.add_argument(
        "--reference",
        default=None,
        help="outputs JSON in AlpacaEval's format (fixed for every γ) or a model path (generated at each γ); "
        "default: AlpacaEval 2's reference outputs from the Hub",
    )
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0, 1.5], help="noise levels γ")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--limit", type=int, default=None, help="evaluate the first N instructions only")
    parser.add_argument(
        "--annotators_config",
        default=None,
        help="alpaca-eval annotator config (name or directory); 'local' = hf-cut's offline judge (unigram F1); "
        "'local-exact' = offline exact match against the reference answers (built-in prompts); "
        "'local-f1' = offline token F1 against them (partial credit: a draw only when equal); "
        "default: alpaca-eval's default (API key needed)",
    )
    parser.add_argument(
        "--instructions",
        default=None,
        help="'builtin' or a .json/.jsonl in AlpacaEval's format; default: AlpacaEval's 805 instructions from the Hub, "
        "else the built-in held-out prompts",
    )
    parser.add_argument(
        "--prompt_format",
        choices=["chat", "training"],
        default="chat",
        help="'chat': the tokenizer's chat template; 'training': the prompt text the model was fine-tuned on "
        "(built-in prompts), e.g. for a chat model fine-tuned on prompt/completion data",
    )
    parser.add_argument("--noise_seed", "--seed", dest="seed", type=int, default=0,
                        help="noise seed (the same for model and reference); --seed is the same flag")  # fmt: skip
    parser.add_argument("--noise_mean", type=float, default=0.0, help="μ of the noise")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--max_new_tokens", type=int, default=256)
    return parser


def check_args(args: argparse.Namespace) -> None:
    """Bad input, before any model is loaded: γ, the model, the reference (a model or an outputs file)."""
    from hf_cut.validation import check_gammas, check_model_paths

    check_gammas(args.gammas)
    check_model_paths([args.model], short_names=("smollm2",))
    if args.reference is not None:
        if args.reference.endswith((".json", ".jsonl")):
            if not os.path.isfile(args.reference):
                raise ValueError(f"--reference: the outputs file {args.reference!r} does not exist.")
        else:
            check_model_paths([args.reference], name="--reference", short_names=("smollm2",))
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit: must be a positive number of instructions, got {args.limit}.")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked before any model is loaded (a usage error names the bad argument)."""
    from hf_cut.validation import parse_checked

    return parse_checked(make_parser(), argv, check_args)



def run(argv: list[str] | None = None):
    """The command line: `hf-cut alpaca-eval …` (and `python eval/alpaca_eval.py …`)."""
    return main(parse_args(argv))
