"""
Out-of-distribution γ sweep of saved classifiers: per-layer loss, accuracy (RMSE for regressors) and constraint
statistics against the noise level γ of the input embeddings, with fixed seeds (the same noise draws for every model).

Writes OUT/ood_sweep.json, OUT/ood_sweep.csv, OUT/metric_vs_gamma.png, OUT/loss_vs_layer.png and prints the
comparison table.

# Constrained against ERM on the built-in held-out split (outputs of recipes/roberta_cls.py)
```bash
python eval/ood_sweep_cls.py \
    --model outputs/cls_minilm outputs/cls_minilm_erm \
    --labels constrained ERM \
    --gammas 0 0.5 1 2 \
    --seeds 0 1 2 \
    --output_dir outputs/ood_sweep_cls
```

# MNLI, matched and mismatched
```bash
python eval/ood_sweep_cls.py --model outputs/roberta-base-mnli-cut outputs/roberta-base-mnli-erm \
    --labels constrained ERM --dataset nyu-mll/glue --dataset_config mnli --split validation_matched \
    --gammas 0 0.5 1 2 --output_dir outputs/ood_sweep_mnli_matched
python eval/ood_sweep_cls.py --model outputs/roberta-base-mnli-cut outputs/roberta-base-mnli-erm \
    --labels constrained ERM --dataset nyu-mll/glue --dataset_config mnli --split validation_mismatched \
    --gammas 0 0.5 1 2 --output_dir outputs/ood_sweep_mnli_mismatched
```
"""

import argparse

SHORT_NAMES = ()  # model names resolved by hf-cut itself


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.classifier_sweep import classifier_ood_sweep, sweep_metric, write_classifier_sweep
    from hf_cut.evaluation.report import comparison_table

    seeds = args.seeds if len(args.seeds) > 1 or args.num_seeds is None else list(range(args.num_seeds))
    result = classifier_ood_sweep(
        args.model,
        args.gammas,
        dataset=args.dataset,
        dataset_config=args.dataset_config,
        split=args.split,
        seeds=seeds,
        alpha=args.alpha,
        batch_size=args.batch_size,
        labels=args.labels,
        limit=args.limit,
        max_length=args.max_length,
    )
    paths = write_classifier_sweep(result, args.output_dir)
    print(comparison_table(result, baseline=args.baseline, metric=sweep_metric(result)))
    print("Written: " + ", ".join(paths.values()))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories (or Hub names)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per model (default: directory names)")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0], help="noise levels γ")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0], help="noise seeds")
    parser.add_argument("--num_seeds", type=int, default=None, help="shortcut for --seeds 0 … N−1")
    parser.add_argument("--dataset", default=None, help="Hub name or local file (default: built-in held-out split)")
    parser.add_argument("--dataset_config", default=None, help="Hub dataset configuration, e.g. mnli")
    parser.add_argument(
        "--split", default=None, help="evaluation split: test (default), validation_matched, validation_mismatched …"
    )
    parser.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--max_length", type=int, default=None, help="truncate the texts to N tokens")
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
