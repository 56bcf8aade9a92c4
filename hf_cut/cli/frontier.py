"""
The accuracy frontier of methods against each other: accuracy at γ = 0 (x) against accuracy under noise (y), every
method's settings as points with ± std over training seeds, at a mild and a strong noise level, and whether any
point of the candidate method lies beyond the baselines' frontiers by more than the spread.

Reads γ sweeps (`ood_sweep.json` files or their directories, from `eval/ood_sweep.py`, any task) whose labels start
with a method name (`ERM γ=0.5`, `deep supervision w=0.3 γ=1`, `constrained upper half γ=1`); writes
`frontier.json` (points, verdicts), `frontier.md` (the table) and `frontier.png`, and prints the table and the verdict. Run it on your own model's sweeps:

# The SmolLM2 noise-training study (studies/smollm2_noise/README.md)
```bash
python eval/frontier.py studies/smollm2_noise/results --output_dir studies/smollm2_noise/results --floor studies/smollm2_noise/results/floor.json
```

# Your own sweeps, noise levels chosen by hand, classification accuracy
```bash
python eval/frontier.py outputs/sweep_a outputs/sweep_b --mild 0.5 --strong 1.5 --metric accuracy \
    --output_dir outputs/frontier
```
"""

import argparse
import json
import os
import sys

from hf_cut.files import atomic_write


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.frontier import (
        frontier_points,
        frontier_report,
        frontier_table,
        merge_sweeps,
        pick_gammas,
        plot_frontier,
        write_frontier,
    )

    result = merge_sweeps(args.sweeps)
    floor = None
    if args.floor:
        with open(args.floor, encoding="utf-8") as f:
            floor = json.load(f)["positional"]
    by_label: dict[str, set] = {}
    for r in result.records:
        by_label.setdefault(r["model"], set()).add(r["gamma"])
    gammas = sorted(g for g in set.intersection(*by_label.values()) if g > 0)  # the γ every label was swept at
    methods = args.methods
    if (args.mild is None or args.strong is None) and args.metric in ("rmse", "loss"):
        raise ValueError(f"argument --metric {args.metric}: give --mild and --strong (the defaults are read off an "
                         "accuracy).")
    if args.mild is None or args.strong is None:
        every_gamma = frontier_points(result, gammas, args.metric, methods)
        mild, strong = pick_gammas(every_gamma, args.baseline, gammas, floor or 0.0)
        mild, strong = args.mild if args.mild is not None else mild, args.strong if args.strong is not None else strong
    else:
        mild, strong = args.mild, args.strong
    points = frontier_points(result, [mild, strong], args.metric, methods)
    baselines = [m for m in methods if m not in (args.candidate, "pretrained")]
    report = frontier_report(points, mild, strong, baselines=baselines, candidate=args.candidate)
    report["metric"], report["sources"] = args.metric, list(args.sweeps)
    if floor is not None:
        report["floor"] = floor
    os.makedirs(args.output_dir, exist_ok=True)
    write_frontier(report, os.path.join(args.output_dir, "frontier.json"))
    plot_frontier(report, os.path.join(args.output_dir, "frontier.png"), args.metric.replace("_", " "), args.title)
    table = frontier_table(report)
    with atomic_write(os.path.join(args.output_dir, "frontier.md")) as f:
        f.write(table + "\n")
    print(table)
    for key, winners in report["beyond_every_baseline"].items():
        print(f"{key}: {', '.join(winners) if winners else 'no ' + args.candidate + ' point'} beyond every baseline")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="ood_sweep.json files or directories holding one")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--mild", type=float, default=None, help="mild γ (default: the last γ where the baseline's "
                        "best point keeps 90%% of its γ = 0 accuracy)")  # fmt: skip
    parser.add_argument("--strong", type=float, default=None,
                        help="strong γ (default: the first γ where it has lost half)")  # fmt: skip
    parser.add_argument("--metric", default="token_accuracy",
                        help="token_accuracy (causal LM), accuracy (classifier) or rmse (denoiser: lower is better; "
                        "give --mild and --strong)")  # fmt: skip
    parser.add_argument("--methods", nargs="+", default=["ERM", "deep supervision", "constrained", "pretrained"],
                        help="method names the labels start with")  # fmt: skip
    parser.add_argument("--baseline", default="ERM", help="method whose curve picks the default γ")
    parser.add_argument("--candidate", default="constrained", help="method whose points are judged")
    parser.add_argument("--title", default=None)
    parser.add_argument("--floor", default=None, metavar="JSON",
                        help="eval/floor.py's output: its positional floor drawn as a line, noted under the table, "
                             "and the default γ counted above it")  # fmt: skip
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from hf_cut.cli.checks import check_sweep_paths
    from hf_cut.validation import parse_checked

    parser = make_parser()
    args = parse_checked(parser, argv, lambda a: check_sweep_paths(a.sweeps))
    if args.floor and not os.path.isfile(args.floor):
        parser.error(f"argument --floor: no file {args.floor!r} (write it with hf-cut floor --output)")
    for name in ("mild", "strong"):
        if getattr(args, name) is not None and getattr(args, name) <= 0:
            parser.error(f"--{name} must be a noise level γ > 0, got {getattr(args, name)}")
    if args.candidate not in args.methods or args.baseline not in args.methods:
        parser.error(f"--candidate and --baseline must be among --methods {args.methods}")
    return args



def run(argv: list[str] | None = None):
    """The command line: `hf-cut frontier …` (and `python eval/frontier.py …`)."""
    return main(parse_args(argv))
