"""
Early exit from saved causal LMs: held-out loss and token accuracy of every truncation ψ(h_k), and self-speculative
decoding (transformers' `assistant_early_exit`) against plain greedy decoding.

Writes OUT/early_exit.json (`layers_kept` per label: mean and std over the models that share it, e.g. training
seeds; `speculative` per label, on its first model: the best early exit k found on the first `--select_prompts`
held-out prompts, then measured on the next `--prompts`) and OUT/early_exit.png.

```bash
python eval/early_exit.py --model outputs/smollm2/erm_s0 outputs/smollm2/cut_s0 --labels ERM constrained \
    --limit 64 --speculative --early_exits 6 10 14 18 22 26 --output_dir studies/smollm2/results/early_exit
```
`--save_truncated DIR` also writes each model cut at its best k (a plain checkpoint, `hf_cut.evaluation.save_truncated`).
"""

import argparse
import os

from hf_cut.files import write_json

SHORT_NAMES = ("smollm2",)


def main(args: argparse.Namespace) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_cut.data import load_instruction_dataset
    from hf_cut.evaluation.early_exit import layers_kept_quality, save_truncated, speculative_decoding
    from hf_cut.evaluation.plots import plot_layers_kept
    from hf_cut.models.smollm2 import resolve_model_name

    labels = args.labels or [os.path.basename(os.path.normpath(m)) for m in args.model]
    test = load_instruction_dataset(args.dataset or "builtin")["test"]
    quality_set = test.select(range(min(args.limit, len(test))))
    prompts = test["prompt"][: args.select_prompts + args.prompts]
    result = {"config": vars(args), "layers_kept": {}, "speculative": {}, "selection": {}}
    per_model: dict[str, list[dict]] = {}  # label -> one quality per model (training seeds share a label)
    for path, label in zip(args.model, labels):
        name = resolve_model_name(path)
        tokenizer = AutoTokenizer.from_pretrained(name)
        model = AutoModelForCausalLM.from_pretrained(name, dtype=torch.float32)
        quality = layers_kept_quality(model, tokenizer, quality_set, batch_size=args.batch_size)
        quality["model"] = path
        per_model.setdefault(label, []).append(quality)
        print(
            f"{label}: token accuracy by layers kept " + " ".join(f"{100 * a:.1f}" for a in quality["token_accuracy"])
        )
        if not args.speculative or label in result["speculative"]:
            continue
        if args.speculative_labels and label not in args.speculative_labels:
            continue
        # the fastest k on the selection prompts, then a separate measurement on the others
        trials = {}
        for k in args.early_exits:
            trial = speculative_decoding(
                model, tokenizer, prompts[: args.select_prompts], k, args.max_new_tokens, progress=False
            )
            trials[k] = trial
            print(f"{label}: k = {k} speed-up {trial['speedup']:.2f}, acceptance {trial['acceptance_rate']:.2f}")
        best = max(trials, key=lambda k: trials[k]["speedup"])
        result["selection"][label] = {str(k): trials[k] for k in trials}
        spec = speculative_decoding(model, tokenizer, prompts[args.select_prompts :], best, args.max_new_tokens)
        spec["token_accuracy_at_k"] = quality["token_accuracy"][best]
        result["speculative"][label] = spec
        print(
            f"{label}: assistant_early_exit={best}: {spec['tokens_per_s']:.1f} tokens/s against "
            f"{spec['baseline_tokens_per_s']:.1f} (×{spec['speedup']:.2f}), acceptance {spec['acceptance_rate']:.2f}, "
            f"identical outputs: {spec['identical_outputs']}"
        )
        if args.save_truncated:
            out = save_truncated(model, best, os.path.join(args.save_truncated, f"{label}_k{best}"), tokenizer, quality)
            print(f"{label}: first {best} layers written to {out}")
    result["layers_kept"] = {label: mean_over_models(runs) for label, runs in per_model.items()}
    os.makedirs(args.output_dir, exist_ok=True)
    write_json(os.path.join(args.output_dir, "early_exit.json"), result, indent=2)
    plot_layers_kept(result["layers_kept"], os.path.join(args.output_dir, "early_exit.png"), title=args.title)
    print(f"Written: {args.output_dir}/early_exit.json, {args.output_dir}/early_exit.png")
    return result


def mean_over_models(runs: list[dict]) -> dict:
    """Layers-kept quality averaged over the models of one label: mean, sample std (0 for one model), each model's."""
    import statistics

    out = {"layers": runs[0]["layers"], "num_models": len(runs), "models": [r["model"] for r in runs]}
    for key in ("loss", "token_accuracy"):
        columns = list(zip(*(r[key] for r in runs)))
        out[key] = [statistics.fmean(c) for c in columns]
        out[f"{key}_std"] = [statistics.stdev(c) if len(c) > 1 else 0.0 for c in columns]
        out[f"{key}_per_model"] = [r[key] for r in runs]
    out["num_tokens"] = runs[0]["num_tokens"]
    return out


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved causal LMs (directories, Hub names, smollm2)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per model (default: directory names)")
    parser.add_argument("--dataset", default=None, help="prompt/completion data (default: built-in held-out split)")
    parser.add_argument("--limit", type=int, default=64, help="held-out examples scored per layer")
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--speculative", action="store_true", help="also measure self-speculative decoding")
    parser.add_argument(
        "--speculative_labels",
        nargs="+",
        default=None,
        help="only for these labels (default: all; first model of each)",
    )
    parser.add_argument("--early_exits", nargs="+", type=int, default=[8, 12, 16, 20, 24], help="k values tried")
    parser.add_argument("--select_prompts", type=int, default=8, help="prompts on which the best k is chosen")
    parser.add_argument("--prompts", type=int, default=32, help="prompts on which the best k is then measured")
    parser.add_argument("--max_new_tokens", type=int, default=32)
    parser.add_argument("--save_truncated", default=None, help="directory for each model cut at its best k")
    parser.add_argument("--title", default="Early exit: held-out quality against layers kept")
    parser.add_argument("--output_dir", required=True)
    return parser


def check_args(args: argparse.Namespace) -> None:
    from hf_cut.validation import check_labels, check_model_paths

    check_labels(args.labels, args.model)
    check_model_paths(args.model, short_names=SHORT_NAMES)
    for name in ("limit", "batch_size", "select_prompts", "prompts", "max_new_tokens"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name}: must be an integer >= 1, got {getattr(args, name)}")
    if any(k < 1 for k in args.early_exits):
        raise ValueError(f"--early_exits: every k must be >= 1 (layers kept by the draft), got {args.early_exits}")


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked before any model is loaded (a usage error names the bad argument)."""
    from hf_cut.validation import parse_checked

    return parse_checked(make_parser(), argv, check_args)



def run(argv: list[str] | None = None):
    """The command line: `hf-cut early-exit …` (and `python eval/early_exit.py …`)."""
    return main(parse_args(argv))
