"""
Merge γ sweeps (one per model, or from earlier studies) into one: records concatenated, labels optionally renamed,
aggregates recomputed; writes OUT/ood_sweep.json, ood_sweep.csv and the plots, as eval/ood_sweep.py does.

```bash
python eval/merge_sweeps.py outputs/sweeps/erm_g1_s0 outputs/sweeps/cut_g1_s0 --output_dir outputs/merged
# an earlier sweep whose labels lacked the training γ
python eval/merge_sweeps.py studies/smollm2/results --relabel "ERM=ERM γ=0" "constrained=constrained γ=0" --output_dir out
# two settings out of a merged file
python eval/merge_sweeps.py studies/smollm2_noise/results --keep "ERM γ=1" "constrained γ=1" --output_dir out
```
"""

import argparse


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation.report import merge_sweeps, write_sweep

    relabel = dict(item.split("=", 1) for item in args.relabel)
    result = merge_sweeps(args.sweeps, relabel, args.max_gamma, args.keep)
    if not result.records:
        raise ValueError(f"argument --keep / --max_gamma: no record left (--keep {args.keep}, --max_gamma "
                         f"{args.max_gamma}).")
    result.config = {"merged_from": list(args.sweeps), "relabel": relabel, **({"keep": args.keep} if args.keep else {})}
    paths = write_sweep(result, args.output_dir)
    print(f"{len(result.records)} records; written: " + ", ".join(paths.values()))


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("sweeps", nargs="+", help="ood_sweep.json files or directories holding one")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--relabel", nargs="*", default=[], help="OLD=NEW label renamings")
    parser.add_argument("--max_gamma", type=float, default=None, help="keep the records with γ <= this only")
    parser.add_argument("--keep", nargs="+", default=None, metavar="LABEL",
                        help="keep the records of these labels only (after --relabel)")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from hf_cut.cli.checks import check_sweep_paths
    from hf_cut.validation import parse_checked

    parser = make_parser()
    args = parse_checked(parser, argv, lambda a: check_sweep_paths(a.sweeps))
    bad = [item for item in args.relabel if "=" not in item or not item.split("=", 1)[0]]
    if bad:
        parser.error(f"--relabel takes OLD=NEW, got {bad}")
    return args



def run(argv: list[str] | None = None):
    """The command line: `hf-cut merge …` (and `python eval/merge_sweeps.py …`)."""
    return main(parse_args(argv))
