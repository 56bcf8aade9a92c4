"""
Does a re-run reproduce a committed sweep? Each model of the new sweeps against the same measurements (label, model
path, γ, noise seed) of the reference sweeps: how many matched and the largest absolute difference of the metric.

```bash
python eval/compare_sweeps.py studies/smollm2_noise/results --against outputs/smollm2_noise/reproduce
```
"""

import argparse


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.report import compare_measurements, merge_sweeps

    rows = compare_measurements(merge_sweeps(args.reference), merge_sweeps(args.against), metric=args.metric)
    scale, unit = (100.0, " (points)") if args.metric in ("token_accuracy", "accuracy") else (1.0, "")
    print(f"| label | model | measurements matched | max abs Δ {args.metric}{unit} |")
    print("| --- | --- | --- | --- |")
    for row in rows:
        diff = "(none committed)" if row["max_abs_diff"] is None else f"{scale * row['max_abs_diff']:.2f}"
        print(f"| {row['model']} | {row['path']} | {row['compared']} | {diff} |")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("reference", nargs="+", help="the committed sweeps (ood_sweep.json files or directories)")
    parser.add_argument("--against", nargs="+", required=True, help="the new sweeps")
    parser.add_argument("--metric", default="token_accuracy", choices=["token_accuracy", "accuracy", "rmse", "loss"])
    return parser



def run(argv: list[str] | None = None):
    """The command line: `hf-cut compare …` (and `python eval/compare_sweeps.py …`)."""
    from hf_cut.cli.checks import check_sweep_paths
    from hf_cut.validation import parse_checked

    def check(args: argparse.Namespace) -> None:
        check_sweep_paths(args.reference, "reference")
        check_sweep_paths(args.against, "--against")

    return main(parse_checked(make_parser(), argv, check))
