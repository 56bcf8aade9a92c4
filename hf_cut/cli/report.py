"""
Side-by-side comparison of a γ sweep: per γ, each model's metric (mean ± std over seeds), its difference to the
baseline, the share of satisfied constraints and the mean descent ratio.

```bash
python eval/report.py outputs/ood_sweep --baseline ERM
# mean ± std over training seeds (each saved model averaged over its noise seeds first), one column per model
python eval/report.py studies/smollm2/results --by_training_seed --metric token_accuracy
# one row per setting (label) and one column per γ: studies of many settings
python eval/report.py studies/smollm2_noise/results --by_training_seed --rows models
# one draw of the evaluation noise only (does a comparison survive another draw?)
python eval/report.py studies/smollm2_noise/results/noise_seeds --by_training_seed --rows models --noise_seeds 1
# is A ahead of B by more than the spread, γ by γ?
python eval/report.py studies/smollm2_noise/results --differences "ERM γ=1 vs constrained γ=1"
```
"""

import argparse
import os

METRICS = ("token_accuracy", "accuracy", "rmse", "loss", "pair_satisfaction", "example_satisfaction",
           "descent_ratio_mean")  # fmt: skip


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.report import (
        comparison_table, difference_table, load_sweep, select_noise_seeds, training_seed_table,
    )  # fmt: skip

    result = load_sweep(args.sweep)
    held = [m for m in METRICS if any(m in r for r in result.records)]
    if result.records and args.metric not in held:
        raise ValueError(f"argument --metric: the sweep holds no {args.metric}; it holds {', '.join(held)}.")
    if args.noise_seeds is not None:
        result = select_noise_seeds(result, args.noise_seeds)
    percent = args.metric in ("token_accuracy", "accuracy")
    if args.differences:
        print(difference_table(result, args.differences, metric=args.metric, percent=percent))
    elif args.by_training_seed:
        print(training_seed_table(result, metric=args.metric, percent=percent, rows=args.rows))
    else:
        print(comparison_table(result, baseline=args.baseline, metric=args.metric))
    if args.figures:
        from hf_cut.evaluation.report import plot_sweep

        os.makedirs(args.figures, exist_ok=True)
        plot_sweep(result, args.figures, args.metric)


def _pair(text: str) -> tuple[str, str]:
    a, sep, b = text.partition(" vs ")
    if not sep or not a.strip() or not b.strip():
        raise argparse.ArgumentTypeError(f"--differences takes 'LABEL A vs LABEL B', got {text!r}")
    return a.strip(), b.strip()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("sweep", help="ood_sweep.json or the directory holding it")
    parser.add_argument("--baseline", default=None, help="model the differences are taken against")
    parser.add_argument(
        "--metric",
        default="token_accuracy",
        choices=METRICS,
    )
    parser.add_argument(
        "--by_training_seed", action="store_true", help="mean ± std over training seeds, one column per model label"
    )
    parser.add_argument(
        "--rows", default="gamma", choices=["gamma", "models"],
        help="with --by_training_seed: one row per γ (default) or one row per model label (many settings)",
    )  # fmt: skip
    parser.add_argument(
        "--noise_seeds", type=int, nargs="+", default=None,
        help="only the measurements of these noise seeds (default: all, each model averaged over them)",
    )  # fmt: skip
    parser.add_argument(
        "--differences", nargs="+", type=_pair, default=None, metavar="'A vs B'",
        help="per pair of labels and γ: mean difference over training seeds, combined spread, * beyond it",
    )  # fmt: skip
    parser.add_argument("--figures", default=None, metavar="DIR",
                        help="also draw metric_vs_gamma.png and loss_vs_layer.png of the sweep into DIR")
    return parser



def run(argv: list[str] | None = None):
    """The command line: `hf-cut report …` (and `python eval/report.py …`)."""
    from hf_cut.cli.checks import check_sweep_paths
    from hf_cut.validation import parse_checked

    return main(parse_checked(make_parser(), argv, lambda args: check_sweep_paths([args.sweep], "sweep")))
