"""
Plot and tabulate the held-out loss per layer of one or more runs of `recipes/llama_sft.py`.

Each OUT_DIR must hold the `layer_losses.json` the recipe writes; the curves are labelled by `--labels` (one per
directory; the directory names by default), drawn into one PNG, and printed as a table. With `--sweep`, the curves
are instead the mean layer losses of each model label of a γ sweep (`eval/ood_sweep.py`) at `--gamma`.

# From a γ sweep: every label at γ = 0, log scale (a real LLM's ℓ_0 is tens of nats)
```bash
python eval/plot_layer_losses.py --sweep studies/smollm2/results/ood_sweep.json --gamma 0 --models pretrained ERM constrained \
    --log --output studies/smollm2/results/layer_losses.png
```

# Constrained against plain ERM
```bash
python eval/plot_layer_losses.py outputs/llama_sft_tiny outputs/llama_sft_tiny_erm \
    --labels constrained ERM \
    --output outputs/layer_losses.png
```
"""

import argparse
import json
import os


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation import layer_loss_table, plot_layer_losses

    curves = _sweep_curves(args) if args.sweep else _run_curves(args)
    print(layer_loss_table(curves))
    path = plot_layer_losses(curves, args.output, title=args.title, log_scale=args.log)
    print(f"📈 Plot written to {path}.")


def _run_curves(args: argparse.Namespace) -> dict[str, list[float]]:
    labels = args.labels or [os.path.basename(os.path.normpath(d)) for d in args.out_dirs]
    curves = {}
    for label, out_dir in zip(labels, args.out_dirs):
        with open(os.path.join(out_dir, "layer_losses.json"), encoding="utf-8") as f:
            curves[label] = json.load(f)["layer_losses"]
    return curves


def _sweep_curves(args: argparse.Namespace) -> dict[str, list[float]]:
    from hf_cut.evaluation.report import load_sweep

    rows = {r["model"]: r for r in load_sweep(args.sweep).aggregates if r["gamma"] == args.gamma}
    if not rows:
        raise ValueError(f"argument --gamma: the sweep has no γ = {args.gamma:g}.")
    models = args.models or list(rows)
    missing = [m for m in models if m not in rows]
    if missing:
        raise ValueError(f"argument --keep: {missing} not in the sweep (models: {list(rows)}).")
    return {m: rows[m]["layer_losses_mean"] for m in models}


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out_dirs", nargs="*", metavar="OUT_DIR", help="run directories holding layer_losses.json")
    parser.add_argument("--sweep", default=None, help="an ood_sweep.json (or its directory) instead of run directories")
    parser.add_argument("--gamma", type=float, default=0.0, help="with --sweep: the noise level γ of the curves")
    parser.add_argument("--keep", "--models", dest="models", nargs="+", default=None, metavar="LABEL",
                        help="with --sweep: the labels drawn (default: all), as merge's --keep; --models is the same")  # fmt: skip
    parser.add_argument("--log", action="store_true", help="logarithmic loss axis")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per OUT_DIR (default: directory names)")
    parser.add_argument("--output", default="layer_losses.png", help="where to write the PNG")
    parser.add_argument("--title", default="Held-out loss per layer", help="plot title")
    return parser



def run(argv: list[str] | None = None):
    """The command line: `hf-cut plot …` (and `python eval/plot_layer_losses.py …`)."""
    from hf_cut.validation import parse_checked

    return main(parse_checked(make_parser(), argv, check_args))


def check_args(args: argparse.Namespace) -> None:
    """Run folders holding ``layer_losses.json`` (one label each), or a sweep: before anything is read."""
    from hf_cut.cli.checks import check_sweep_paths

    if args.sweep is not None:
        check_sweep_paths([args.sweep], "--sweep")
        return
    if not args.out_dirs:
        raise ValueError("argument OUT_DIR: give run folders (OUT_DIR …) or --sweep.")
    if args.labels is not None and len(args.labels) != len(args.out_dirs):
        raise ValueError(f"argument --labels: {len(args.labels)} labels for {len(args.out_dirs)} run folders; give "
                         "one per OUT_DIR.")  # fmt: skip
    for out_dir in args.out_dirs:
        if not os.path.isfile(os.path.join(out_dir, "layer_losses.json")):
            raise ValueError(f"argument OUT_DIR: {out_dir!r} holds no layer_losses.json (a recipe's output folder).")
