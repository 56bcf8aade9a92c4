"""
Pool generation sweeps (eval/alpaca_eval.py outputs) over training seeds: win rate and exact match, mean ± std per
comparison and γ. Directories ROOT/<comparison>_s<seed>/alpaca_eval.json are pooled by <comparison>.

```bash
python eval/generation_report.py studies/smollm2/results/generation --output studies/smollm2/results/generation.json
```
"""

import argparse
import os

from hf_cut.files import write_json


def main(args: argparse.Namespace) -> dict:
    from hf_cut.evaluation.generation.report import generation_table, summarise_generation

    summary = summarise_generation(args.root)
    print(generation_table(summary))
    if args.output:
        write_json(args.output, summary, indent=2)
        print(f"Written: {args.output}")
    return summary


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("root", help="folder of <comparison>_s<seed>/alpaca_eval.json run directories")
    parser.add_argument("--output", default=None, help="write the pooled summary as JSON here")
    return parser



def run(argv: list[str] | None = None):
    """The command line: `hf-cut generation-report …` (and `python eval/generation_report.py …`)."""
    from hf_cut.validation import parse_checked

    def check(args: argparse.Namespace) -> None:
        if not os.path.isdir(args.root):
            raise ValueError(f"argument root: {args.root!r} is not a folder (of <comparison>_s<seed>/alpaca_eval.json "
                             "run folders, as hf-cut alpaca-eval writes them).")  # fmt: skip

    return main(parse_checked(make_parser(), argv, check))
