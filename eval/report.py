"""
Side-by-side comparison of a γ sweep: per γ, each model's metric (mean ± std over seeds), its difference to the
baseline, the share of satisfied constraints and the mean descent ratio.

```bash
python eval/report.py outputs/ood_sweep --baseline ERM
```
"""

import argparse


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.report import comparison_table, load_sweep

    print(comparison_table(load_sweep(args.sweep), baseline=args.baseline, metric=args.metric))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("sweep", help="ood_sweep.json or the directory holding it")
    parser.add_argument("--baseline", default=None, help="model the differences are taken against")
    parser.add_argument("--metric", default="token_accuracy", choices=["token_accuracy", "accuracy", "rmse", "loss"])
    return parser


if __name__ == "__main__":
    parser = make_parser()
    main(parser.parse_args())
