"""The one command line of the γ sweep, for every task: ``eval/ood_sweep.py --task {causal_lm,classification,denoising}``.

``eval/ood_sweep_cls.py`` and ``eval/ood_sweep_denoise.py`` are this parser with the task preset, so every command
they documented still works. Every task takes the same common flags; the evaluation-set flags of one task are refused
with another (named in the message). Defaults that differ by task (noise seeds, batch size) are in ``TASK_DEFAULTS``.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, fields

from ..evaluation.tasks import TASK_NAMES

__all__ = ["TASK_DEFAULTS", "main", "make_parser", "parse_args", "preset"]

# per-task defaults, as each task's command documented them before they shared a parser
TASK_DEFAULTS = {
    "causal_lm": {"seeds": [0], "batch_size": 64},
    "classification": {"seeds": [0], "batch_size": 64},
    "denoising": {"seeds": [0, 1, 2], "batch_size": 256},
}
SHORT_NAMES = {"causal_lm": ("smollm2",), "classification": (), "denoising": ()}  # resolved by hf-cut itself
TEXT_FLAGS = {"dataset": ("causal_lm", "classification"), "dataset_config": ("classification",),
              "split": ("classification",), "max_length": ("classification",)}  # fmt: skip
# the denoiser's test clips: (flag, type, help) of the fields of hf_cut.data.video.VideoDataArguments they override
VIDEO_ARGS = (
    ("dataset_name", str, "digits, shapes, ucsd, avenue, shanghaitech or folder"),
    ("data_dir", str, None), ("train_subdir", str, None), ("test_subdir", str, None), ("frame_size", int, None),
    ("num_frames", int, None), ("noise_std", float, "std of the data's own corruption (γ = 0)"),
    ("dataset_seed", int, None), ("num_test_examples", int, None), ("clip_stride", int, None), ("frame_step", int, None),
    ("max_clips_per_video", int, None),
)  # fmt: skip
VIDEO_FLAGS = tuple(name for name, _, _ in VIDEO_ARGS)


def make_parser(task: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    """The sweep's parser; ``task`` presets ``--task`` (the per-task commands)."""
    parser = argparse.ArgumentParser(description=description or "Out-of-distribution γ sweep of saved models.")
    parser.add_argument("--task", choices=TASK_NAMES, default=task or "causal_lm", help="what the models are")
    parser.add_argument("--model", nargs="+", required=True, help="saved model directories (or Hub names)")
    parser.add_argument("--labels", nargs="+", default=None, help="one name per model (default: directory names)")
    parser.add_argument("--gammas", nargs="+", type=float, default=[0.0, 0.5, 1.0, 1.5, 2.0], help="noise levels γ")
    parser.add_argument("--noise_seeds", "--seeds", dest="seeds", nargs="+", type=int, default=None,
                        help="noise seeds (default: 0; denoising: 0 1 2); --seeds is the same flag")  # fmt: skip
    parser.add_argument("--num_noise_seeds", "--num_seeds", dest="num_seeds", type=int, default=None,
                        help="shortcut for --noise_seeds 0 … N−1")  # fmt: skip
    parser.add_argument("--noise_mean", type=float, default=0.0, help="μ, the mean of the test noise")
    parser.add_argument("--alpha", type=float, default=None,
                        help="α of the constraints whose satisfaction is measured (default: the α the models' run "
                             "summaries record; 0.1, with a warning, when none does)")  # fmt: skip
    parser.add_argument("--batch_size", type=int, default=None, help="default: 64; denoising: 256")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    parser.add_argument("--baseline", default=None, help="model the differences are taken against (default: ERM)")
    parser.add_argument("--num_threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--output_dir", required=True)
    text = parser.add_argument_group("evaluation set of the causal LM and classification tasks")
    text.add_argument("--dataset", default=None, help="Hub name or local path (default: built-in held-out split)")
    text.add_argument("--dataset_config", default=None, help="classification: Hub dataset configuration, e.g. mnli")
    text.add_argument("--split", default=None, help="classification: test (default), validation_matched …")
    text.add_argument("--max_length", type=int, default=None, help="classification: truncate the texts to N tokens")
    video = parser.add_argument_group("test clips of the denoising task (default: the first model's training data)")
    for name, kind, help_text in VIDEO_ARGS:
        video.add_argument(f"--{name}", type=kind, default=None, help=help_text)
    return parser


def _fill_defaults(args: argparse.Namespace) -> argparse.Namespace:
    defaults = TASK_DEFAULTS[args.task]
    if args.seeds is None:
        args.seeds = list(range(args.num_seeds)) if args.num_seeds is not None else list(defaults["seeds"])
    if args.batch_size is None:
        args.batch_size = defaults["batch_size"]
    return args


def check_task_flags(args: argparse.Namespace) -> None:
    """Flags of another task's evaluation set are refused, by name."""
    for name, tasks in TEXT_FLAGS.items():
        if getattr(args, name, None) is not None and args.task not in tasks:
            raise ValueError(f"--{name} applies to --task {' / '.join(tasks)}, not {args.task}.")
    if args.task != "denoising":
        given = [name for name in VIDEO_FLAGS if getattr(args, name, None) is not None]
        if given:
            raise ValueError(f"--{given[0]} applies to --task denoising, not {args.task}.")


def parse_args(argv=None, task: str | None = None, description: str | None = None) -> argparse.Namespace:
    """The command line, checked before any model is loaded (a usage error names the bad argument)."""
    from ..validation import check_sweep_args, parse_checked

    def check(args):
        check_task_flags(args)
        check_sweep_args(args, SHORT_NAMES[args.task])

    return _fill_defaults(parse_checked(make_parser(task, description), argv, check))


def preset(task: str, description: str):
    """``(make_parser, parse_args)`` of the sweep with ``--task`` preset: what a per-task script exposes."""

    def preset_parser() -> argparse.ArgumentParser:
        return make_parser(task, description)

    def preset_args(argv=None) -> argparse.Namespace:
        return parse_args(argv, task, description)

    return preset_parser, preset_args


def _video_test_set(args: argparse.Namespace):
    """The test clips: the first model's training data settings, overridden by the flags given."""
    from ..data.video import VideoDataArguments

    values = {}
    summary = os.path.join(args.model[0], "layer_losses.json")
    if args.dataset_name is None and os.path.isfile(summary):
        with open(summary, encoding="utf-8") as f:
            values.update(json.load(f).get("data", {}))
    given = {f.name: getattr(args, f.name, None) for f in fields(VideoDataArguments)}
    values.update({name: value for name, value in given.items() if value is not None})
    values["num_train_examples"] = 1  # the test clips do not depend on the number of training clips
    return VideoDataArguments.from_dict(values)


def _denoising(args: argparse.Namespace) -> None:
    from transformers import AutoModel

    import hf_cut.models.unrolled  # noqa: F401  (registers the unrolled transformer with AutoModel)

    from ..evaluation.denoise_sweep import denoise_sweep, rmse_table, write_denoise_sweep
    from ..evaluation.sweep import resolve_alpha, sweep_labels

    args.alpha = resolve_alpha(args.alpha, args.model)
    labels = sweep_labels(args.model, args.gammas, args.alpha, args.labels)
    data_args = _video_test_set(args)
    test = data_args.load()["test"]
    if args.limit is not None:
        test = test.select(range(min(args.limit, len(test))))
    models = {label: AutoModel.from_pretrained(path) for label, path in zip(labels, args.model)}
    records = denoise_sweep(models, test, args.gammas, args.seeds, args.alpha, args.batch_size, args.noise_mean)
    config = {"models": [{"label": label, "path": path} for label, path in zip(labels, args.model)],
              "data": asdict(data_args), "alpha": args.alpha, "num_examples": len(test)}  # fmt: skip
    paths = write_denoise_sweep(records, args.output_dir, config=config)
    print(rmse_table(records))
    print("Written: " + ", ".join(dict.fromkeys(paths.values())))


def main(args: argparse.Namespace) -> None:
    """Run the sweep the arguments describe, write its files, print the comparison table."""
    import torch

    from ..evaluation import sweep
    from ..evaluation.report import comparison_table, sweep_metric, write_sweep

    args = _fill_defaults(args)
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    if args.task == "denoising":
        _denoising(args)
        return
    common = dict(seeds=args.seeds, alpha=args.alpha, batch_size=args.batch_size, labels=args.labels,
                  limit=args.limit, noise_mean=args.noise_mean)  # fmt: skip
    if args.task == "classification":
        common.update(dataset_config=args.dataset_config, split=args.split, max_length=args.max_length)
    result = sweep(args.task, args.model, args.gammas, dataset=args.dataset, **common)
    paths = write_sweep(result, args.output_dir)
    print(comparison_table(result, baseline=args.baseline, metric=sweep_metric(result)))
    print("Written: " + ", ".join(paths.values()))


def run(argv: list[str] | None = None) -> None:
    """The command line: `hf-cut sweep …` (and `python eval/ood_sweep.py …`)."""
    main(parse_args(argv))
