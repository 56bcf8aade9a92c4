"""
One row per training run (the `layer_losses.json` a recipe writes): held-out loss and accuracy, how monotone the
layer losses are, constraint satisfaction, the final duals, the training time — a Markdown table and a JSON file.

```bash
python eval/runs_table.py outputs/smollm2/{erm,hard,cut}_s0 --labels ERM "hard (paper)" constrained \
    --output studies/smollm2/results/runs_table.json
# add two runs to a committed table, keeping its other rows
python eval/runs_table.py outputs/new_s0 outputs/new_s1 --merge docs/x/runs.json --output docs/x/runs.json
```
"""

import argparse
import json
import os

from hf_cut.files import write_json


def summarise(run_dir: str) -> dict:
    """The row of one run directory."""
    with open(os.path.join(run_dir, "layer_losses.json"), encoding="utf-8") as f:
        run = json.load(f)
    losses, duals = run["layer_losses"], run.get("dual_variables") or []
    accuracy = run.get("eval_mean_token_accuracy", run.get("accuracy"))
    return {
        "run": run_dir,
        "loss": losses[-1],
        "accuracy": accuracy,
        "layer_losses": losses,
        "descending_layers": sum(losses[l] <= losses[l - 1] for l in range(1, len(losses))),
        "num_layers": len(losses) - 1,
        "max_intermediate_loss": max(losses[1:-1]) if len(losses) > 2 else None,
        "constraint_satisfaction": run.get("constraint_satisfaction"),
        "descent_ratio_mean": run.get("descent_ratio_mean"),
        "dual_sum": sum(duals),
        "dual_max": max(duals) if duals else 0.0,
        "train_runtime_s": run.get("train_runtime"),
    }


def table(rows: list[dict], labels: list[str]) -> str:
    lines = ["| run | ℓ_L | accuracy | ℓ_1 | max ℓ_1…ℓ_{L−1} | layers descending | batches satisfied | Σλ | max λ | "
             "train time |", "|" + " --- |" * 10]  # fmt: skip
    for label, r in zip(labels, rows):
        lines.append(
            f"| {label} | {r['loss']:.3f} | {100 * r['accuracy']:.1f}% | {r['layer_losses'][1]:.1f} | "
            f"{r['max_intermediate_loss']:.1f} | {r['descending_layers']}/{r['num_layers']} | "
            f"{100 * (r['constraint_satisfaction'] or 0):.0f}% | {r['dual_sum']:.2f} | {r['dual_max']:.2f} | "
            f"{r['train_runtime_s']:.0f} s |"
        )
    return "\n".join(lines)


def main(args: argparse.Namespace) -> list[dict]:
    labels = args.labels or [os.path.basename(os.path.normpath(d)) for d in args.run_dirs]
    rows = {label: summarise(d) for label, d in zip(labels, args.run_dirs)}
    if args.merge and os.path.isfile(args.merge):  # earlier rows first; a run summarised again replaces its row
        with open(args.merge, encoding="utf-8") as f:
            earlier = {row.pop("label"): row for row in json.load(f)}
        rows = {**earlier, **rows}
    print(table(list(rows.values()), list(rows)))
    if args.output:
        write_json(args.output, [{"label": label, **row} for label, row in rows.items()], indent=2)
        print(f"Written: {args.output}")
    return list(rows.values())


def check_args(args: argparse.Namespace) -> None:
    if args.labels and len(args.labels) != len(args.run_dirs):
        raise ValueError(f"--labels: {len(args.labels)} labels for {len(args.run_dirs)} run directories.")
    missing = [d for d in args.run_dirs if not os.path.isfile(os.path.join(d, "layer_losses.json"))]
    if missing:
        raise ValueError(f"RUN_DIR: no layer_losses.json in {missing} (the output_dir of a recipe run).")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="recipe output directories")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per RUN_DIR")
    parser.add_argument("--output", default=None, help="write the rows as JSON here")
    parser.add_argument("--merge", default=None, metavar="JSON",
                        help="keep the rows of this earlier --output whose label is not among RUN_DIR's (a study "
                             "resumed on a machine that no longer holds its earlier runs); absent file: ignored")
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from hf_cut.validation import parse_checked

    return parse_checked(make_parser(), argv, check_args)



def run(argv: list[str] | None = None):
    """The command line: `hf-cut runs …` (and `python eval/runs_table.py …`)."""
    return main(parse_args(argv))
