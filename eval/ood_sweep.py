"""
Out-of-distribution γ sweep of saved models: per-layer loss, token accuracy and constraint statistics against the
noise level γ of the input embeddings, with fixed seeds (the same noise draws for every model).

Writes OUT/ood_sweep.json, OUT/ood_sweep.csv, OUT/metric_vs_gamma.png, OUT/loss_vs_layer.png and prints the
comparison table (see eval/report.py).

# Constrained against ERM on the built-in held-out split
```bash
python eval/ood_sweep.py \
    --model outputs/llama_sft_tiny outputs/llama_sft_tiny_erm \
    --labels constrained ERM \
    --gammas 0 0.5 1 1.5 2 \
    --seeds 0 1 2 \
    --output_dir outputs/ood_sweep
```

# Another evaluation set (Hub name or local path, its test split)
```bash
python eval/ood_sweep.py --model outputs/llama31-8b-alpaca-cut --dataset tatsu-lab/alpaca --limit 500 \
    --gammas 0 1 2 --output_dir outputs/ood_sweep_alpaca
```
"""

import argparse

SHORT_NAMES = ("smollm2",)  # model names resolved by hf-cut itself


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.report import comparison_table, write_sweep
    from hf_cut.evaluation.sweep import ood_sweep

    seeds = args.seeds if len(args.seeds) > 1 or args.num_seeds is None else list(range(args.num_seeds))
    result = ood_sweep(
        args.model,
        args.gammas,
        dataset=args.dataset,
        seeds=seeds,
        alpha=args.alpha,
        batch_size=args.batch_size,
        labels=args.labels,
        limit=args.limit,
    )
    paths = write_sweep(result, args.output_dir)
    print(comparison_table(result, baseline=args.baseline))
    print("Written: " + ", ".join(paths.values()))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories (or Hub names)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per model (default: directory names)")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0], help="noise levels γ")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="noise seeds")
    parser.add_argument("--num_seeds", type=int, default=None, help="shortcut for --seeds 0 … N−1")
    parser.add_argument("--dataset", default=None, help="Hub name or local path (default: built-in held-out split)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--alpha", type=float, default=0.1, help="α of the constraints whose satisfaction is measured")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--baseline", default=None, help="model the differences are taken against")
    parser.add_argument("--output_dir", required=True)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    """The command line, checked before any model is loaded (a usage error names the bad argument)."""
    from hf_cut.validation import check_sweep_args, parse_checked

    return parse_checked(make_parser(), argv, lambda args: check_sweep_args(args, SHORT_NAMES))


if __name__ == "__main__":
    main(parse_args())
