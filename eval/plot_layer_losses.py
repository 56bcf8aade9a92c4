"""
Plot and tabulate the held-out loss per layer of one or more runs of `recipes/llama_sft.py`.

Each OUT_DIR must hold the `layer_losses.json` the recipe writes; the curves are labelled by `--labels` (one per
directory; the directory names by default), drawn into one PNG, and printed as a table.

# Constrained against plain ERM
```bash
python eval/plot_layer_losses.py outputs/llama_sft_tiny outputs/llama_sft_tiny_erm \
    --labels constrained ERM \
    --output docs/layer_losses.png
```
"""

import argparse
import json
import os


def main(args: argparse.Namespace) -> None:
    from hf_cut.evaluation import layer_loss_table, plot_layer_losses

    labels = args.labels or [os.path.basename(os.path.normpath(d)) for d in args.out_dirs]
    if len(labels) != len(args.out_dirs):
        raise SystemExit(f"--labels: got {len(labels)} labels for {len(args.out_dirs)} output directories")
    curves = {}
    for label, out_dir in zip(labels, args.out_dirs):
        with open(os.path.join(out_dir, "layer_losses.json"), encoding="utf-8") as f:
            curves[label] = json.load(f)["layer_losses"]
    print(layer_loss_table(curves))
    path = plot_layer_losses(curves, args.output, title=args.title)
    print(f"📈 Plot written to {path}.")


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("out_dirs", nargs="+", metavar="OUT_DIR", help="run directories holding layer_losses.json")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per OUT_DIR (default: directory names)")
    parser.add_argument("--output", default="docs/layer_losses.png", help="where to write the PNG")
    parser.add_argument("--title", default="Held-out loss per layer", help="plot title")
    return parser


if __name__ == "__main__":
    parser = make_parser()
    args = parser.parse_args()
    main(args)
