"""
Dual variables during training: Σ_l λ_l and max_l λ_l against the optimizer step, with the training token accuracy,
one line per run — from a run's `layer_losses.json` (its `log_history`) or from the log a recipe printed
(one dict per logging step, as the Trainer prints it with `disable_tqdm`).

```bash
python eval/plot_duals.py logs/hard_s0.log logs/cut_s0.log --labels "hard (paper)" "β = 1/L" \
    --logging_steps 5 --output studies/smollm2/results/duals.png
```
"""

import argparse
import ast
import json
import os

from hf_cut.files import save_figure, write_json


def read_history(path: str, logging_steps: int) -> list[dict]:
    """The training log entries (with `step`) of a layer_losses.json or a printed log."""
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            history = json.load(f).get("log_history")
        if not history:
            raise ValueError(f"{path}: no log_history (written by recipes/llama_sft.py since it records it)")
        return [h for h in history if any(k.startswith("dual/") for k in h) and "loss" in h]
    entries = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{'loss'"):
                entry = {k: float(v) for k, v in ast.literal_eval(line).items()}
                entries.append({"step": logging_steps * (len(entries) + 1), **entry})
    if not entries:
        raise ValueError(f"{path}: no training log line ({{'loss': …}}) found")
    return entries


def trajectory(history: list[dict]) -> dict:
    duals = [[v for k, v in h.items() if k.startswith("dual/") and k[5:].isdigit()] for h in history]
    return {
        "step": [int(h["step"]) for h in history],
        "dual_sum": [sum(d) for d in duals],
        "dual_max": [max(d) if d else 0.0 for d in duals],
        "mean_token_accuracy": [h.get("mean_token_accuracy") for h in history],
    }


def main(args: argparse.Namespace) -> dict:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    labels = args.labels or [os.path.splitext(os.path.basename(p))[0] for p in args.logs]
    curves = {label: trajectory(read_history(p, args.logging_steps)) for label, p in zip(labels, args.logs)}
    fig = Figure(figsize=(10, 3.8), dpi=120)
    FigureCanvasAgg(fig)
    ax_sum, ax_acc = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for label, c in curves.items():
        ax_sum.plot(c["step"], [max(v, 1e-3) for v in c["dual_sum"]], marker="o", label=label)
        ax_acc.plot(c["step"], [100 * (a or 0) for a in c["mean_token_accuracy"]], marker="o", label=label)
    ax_sum.set_yscale("log")
    ax_sum.set_xlabel("optimizer step")
    ax_sum.set_ylabel(r"$\sum_l \lambda_l$ (log)")
    ax_acc.set_xlabel("optimizer step")
    ax_acc.set_ylabel("training token accuracy (%)")
    for ax in (ax_sum, ax_acc):
        ax.grid(True, alpha=0.3)
    ax_acc.legend()
    if args.title:
        fig.suptitle(args.title)
    fig.tight_layout()
    save_figure(fig, args.output, format="png")
    json_path = os.path.splitext(args.output)[0] + ".json"
    write_json(json_path, curves, indent=2)
    for label, c in curves.items():
        print(f"{label}: Σλ {' → '.join(f'{v:.2f}' for v in c['dual_sum'])}")
    print(f"Written: {args.output}, {json_path}")
    return curves


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("logs", nargs="+", help="layer_losses.json files or printed recipe logs")
    parser.add_argument("--labels", nargs="+", default=None, help="one label per log")
    parser.add_argument("--logging_steps", type=int, default=5, help="steps between two printed log lines")
    parser.add_argument("--output", required=True, help="the PNG (the curves also go to the same name .json)")
    parser.add_argument("--title", default=None)
    return parser


def parse_args(argv=None) -> argparse.Namespace:
    from hf_cut.validation import parse_checked

    def check(args):
        if args.labels and len(args.labels) != len(args.logs):
            raise ValueError(f"--labels: {len(args.labels)} labels for {len(args.logs)} logs.")
        missing = [p for p in args.logs if not os.path.isfile(p)]
        if missing:
            raise ValueError(f"LOGS: {missing} do not exist.")
        if args.logging_steps < 1:
            raise ValueError(f"--logging_steps: must be >= 1, got {args.logging_steps}.")

    return parse_checked(make_parser(), argv, check)



def run(argv: list[str] | None = None):
    """The command line: `hf-cut plot-duals …` (and `python eval/plot_duals.py …`)."""
    return main(parse_args(argv))
