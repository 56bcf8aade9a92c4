"""
Video denoising with the paper's unrolled transformer under the layerwise descent constraints of P-CUT
(arXiv 2601.17257).

Trains `hf_cut.models.unrolled.UnrolledTransformerModel` with `hf_cut.ConstrainedTrainer` to map noisy clips
(clean + N(0, noise_std²)) to clean ones, evaluates on the held-out clips, and runs the out-of-distribution γ sweep
(extra Gaussian noise of std γ·σ_x on the input frames). Writes to `output_dir`: the model, `layer_losses.json`
(held-out ℓ_0 … ℓ_L, RMSE, dual variables, per-example constraint satisfaction, data settings), `layer_losses.png`,
the γ sweep as every task writes it (`ood_sweep.json`, `ood_sweep.csv`, `metric_vs_gamma.png` with RMSE against γ,
`loss_vs_layer.png`). Without `--config` it reads
`unrolled_denoise.yaml` (next to this file); any flag overrides the YAML, this one or the one given with `--config`.

Run it as ``hf-cut denoise [flags]`` (launched through ``accelerate launch``; ``--accelerate_config NAME`` picks a
shipped configuration) or ``python -m hf_cut.recipes.denoise [flags]`` (this process). The repository's
``recipes/unrolled_denoise.py`` is a thin file over this module; its docstring lists the documented command lines.
"""

import os
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from trl import TrlParser

from ..config import ConstrainedTrainingArguments, constraint_options
from ..data.video import VideoDataArguments
from ..model_card import method_label

# the built-in default, the same file as the repository's recipes/unrolled_denoise.yaml
DEFAULT_CONFIG = os.path.join(os.path.dirname(os.path.abspath(__file__)), "unrolled_denoise.yaml")


@dataclass
class UnrolledDenoiseScriptArguments(VideoDataArguments):
    """The clips (fields of `hf_cut.data.video.VideoDataArguments`), the unrolled transformer's size, and the sweep."""

    hidden_size: int = field(default=32, metadata={"help": "d: width of the query, key and value projections."})
    num_layers: int = field(default=10, metadata={"help": "L: number of unrolled layers."})
    activation: str = field(default="relu", metadata={"help": "σ: relu, tanh, sigmoid, gelu or identity."})
    initializer_range: float = field(default=0.02, metadata={"help": "Std of the initialisation of Q, K, V, W."})
    sweep_gammas: list[float] = field(
        default_factory=lambda: [0.0, 0.5, 1.0, 1.5, 2.0], metadata={"help": "Test perturbation levels γ."}
    )
    sweep_seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Noise seeds of the sweep."})
    num_threads: int | None = field(
        default=None,
        metadata={"help": "torch CPU threads (torch.set_num_threads); 1 is fastest for the small default on a busy CPU."},
    )
    sweep_compare: list[str] = field(
        default_factory=list,
        metadata={"help": "Saved models swept beside this one, as LABEL=PATH (or PATH: the folder name is the label)."},
    )


def main(script_args, training_args):
    """Train, evaluate and save one unrolled-denoiser run from the parsed dataclasses: the clips
    (``script_args.dataset_name``), the unrolled transformer, ``ConstrainedTrainer``, the held-out layer losses and
    RMSE, the γ sweep (``sweep_gammas``) in ``output_dir``, and the Hub push when asked."""
    import torch
    import transformers
    from transformers import AutoModel

    from ..trainer import ConstrainedTrainer
    from ..evaluation import layer_losses_from_metrics
    from ..run_files import finish_run, write_run_summary
    from ..evaluation import sweep
    from ..evaluation.denoise_sweep import rmse_table, write_denoise_sweep
    from ..models.unrolled import UnrolledTransformerConfig, UnrolledTransformerModel

    if script_args.num_threads:
        torch.set_num_threads(script_args.num_threads)

    # Data: noisy/clean clip pairs, train and held-out test
    data_args = VideoDataArguments.from_dict(asdict(script_args))
    dataset = data_args.load()
    num_frames, frame_dim = dataset["train"][0]["labels"].shape

    # Model: L unrolled layers X_l = σ(W_l Z_l + U_l X_{l−1}), identity readout
    config = UnrolledTransformerConfig(
        frame_dim=frame_dim,
        num_frames=num_frames,
        hidden_size=script_args.hidden_size,
        num_hidden_layers=script_args.num_layers,
        activation=script_args.activation,
        initializer_range=script_args.initializer_range,
    )
    transformers.set_seed(training_args.seed)
    model = UnrolledTransformerModel(config)
    model_name = f"unrolled-transformer-{script_args.num_layers}x{script_args.hidden_size}-{script_args.dataset_name}"

    # Train under the constraints (or plain ERM with --constrained false)
    trainer = ConstrainedTrainer(
        model=model,
        args=training_args,
        train_dataset=dataset["train"],
        eval_dataset=dataset["test"] if training_args.eval_strategy != "no" else None,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("✅ Training completed.")
    metrics = trainer.evaluate(dataset["test"])
    trainer.save_model(training_args.output_dir)
    trainer.accelerator.print(f"💾 Model saved to {training_args.output_dir}.")
    trainer.noise.remove()  # the sweep attaches its own noise at each γ

    if trainer.is_world_process_zero():
        label = method_label(training_args)
        alpha = training_args.descent_alpha
        # in distribution, exact means
        clean = sweep("denoising", {label: model}, [0.0], dataset=dataset["test"], alpha=alpha, progress=False).records[0]
        layer_losses = clean["layer_losses"]

        # γ sweep of this model and of the saved models to compare with
        models = {label: model}
        for entry in script_args.sweep_compare:
            name, _, path = entry.rpartition("=")
            models[name or os.path.basename(os.path.normpath(path))] = AutoModel.from_pretrained(path).to(model.device)
        records = sweep("denoising", models, script_args.sweep_gammas, dataset=dataset["test"],
                        seeds=script_args.sweep_seeds, alpha=alpha, progress=False).records  # fmt: skip
        sweep_paths = write_denoise_sweep(
            records, training_args.output_dir, config={"models": list(models), "data": asdict(data_args), "alpha": alpha}
        )

        summary = {
            "model": model_name,
            "data": asdict(data_args),
            **constraint_options(training_args),  # every constraint option, by name
            "num_layers": trainer.num_layers,
            "layer_losses": layer_losses,
            "layer_rmse": clean["layer_rmse"],
            "rmse": clean["rmse"],
            "monotone": clean["monotone"],
            "pair_satisfaction": clean["pair_satisfaction"],
            "example_satisfaction": clean["example_satisfaction"],
            "descent_ratio_mean": clean["descent_ratio_mean"],
            "dual_variables": trainer.dual_variables.tolist(),
            "eval_layer_losses": layer_losses_from_metrics(metrics, prefix="eval_"),
            "eval_loss": metrics.get("eval_loss"),
            "train_runtime": train_result.metrics.get("train_runtime"),
            "global_step": trainer.state.global_step,
            "sweep": {str(r["gamma"]): r["rmse_mean"] for r in _rows_of(records, label)},
            "eval_metrics": metrics,
        }
        json_path, png_path = write_run_summary(trainer, summary, {label: layer_losses}, model_name, ", γ = 0")
        print(
            f"RMSE {clean['rmse']:.4f}  monotone {clean['monotone']}  pair satisfaction "
            f"{clean['pair_satisfaction']:.4f}  example satisfaction {clean['example_satisfaction']:.4f}  "
            f"mean descent ratio {clean['descent_ratio_mean']:.4f}"
        )
        print(f"\nRMSE against the test perturbation γ:\n{rmse_table(records)}")
        print(f"📈 Written: {json_path}, {png_path}, " + ", ".join(sweep_paths.values()))

    finish_run(trainer, script_args.dataset_name)


def _rows_of(records, label):
    from ..evaluation.denoise_sweep import aggregate_denoise_records

    return [r for r in aggregate_denoise_records(records) if r["model"] == label]


def make_parser():
    """TRL's parser over the script arguments (data, model size, sweep) and ``ConstrainedTrainingArguments``."""
    return TrlParser((UnrolledDenoiseScriptArguments, ConstrainedTrainingArguments))


def train(argv: Sequence[str] | None = None, default_config: str = DEFAULT_CONFIG) -> None:
    """Train in this process: the recipe's flags (``--config X.yaml``, else ``default_config``, then any field as a
    flag) parsed and checked, then :func:`main`. What each process of ``hf-cut denoise`` runs, and
    ``recipes/unrolled_denoise.py``."""
    from ..validation import parse_recipe_args

    main(*parse_recipe_args(make_parser(), sys.argv[1:] if argv is None else argv, default_config))


def run(argv: Sequence[str]) -> int:
    """``hf-cut denoise [--accelerate_config NAME|FILE] [accelerate launch flags] [recipe flags]``: the flags checked
    here, then :func:`train` launched through ``accelerate launch``."""
    from .launch import launch

    return launch("hf_cut.recipes.denoise", make_parser, argv, DEFAULT_CONFIG, None)


if __name__ == "__main__":
    train()
