"""What every recipe writes at the end of a run: ``layer_losses.json`` (the run's summary), ``layer_losses.png`` and
the per-layer table on stdout; then the Hub push (``push_to_hub``) and the trackers' end."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence

from .evaluation.plots import layer_loss_table, plot_layer_losses
from .files import write_json
from .model_card import method_label

__all__ = ["finish_run", "write_run_summary"]


def write_run_summary(trainer, summary: dict, curves: Mapping[str, Sequence[float]], model_name: str,
                      table_note: str = "") -> tuple[str, str]:  # fmt: skip
    """Write ``summary`` to ``output_dir/layer_losses.json`` and the held-out ``curves`` (label → ℓ_0 … ℓ_L) to
    ``layer_losses.png``; print their table. Returns both paths. Call on the main process only."""
    args = trainer.args
    label = method_label(args)
    json_path = os.path.join(args.output_dir, "layer_losses.json")
    write_json(json_path, summary, indent=2)
    png_path = plot_layer_losses(
        curves,
        os.path.join(args.output_dir, "layer_losses.png"),
        title=f"{model_name.split('/')[-1]}: held-out loss per layer ({label}, α = {args.descent_alpha})",
    )
    print(f"\nHeld-out loss per layer ({label}{table_note}):\n{layer_loss_table(curves)}")
    return json_path, png_path


def finish_run(trainer, dataset_name: str | None = None) -> None:
    """Push to the Hub when ``push_to_hub`` is set, then end the trainer (trackers, process group)."""
    if trainer.args.push_to_hub:
        trainer.push_to_hub(dataset_name=dataset_name)
        trainer.accelerator.print(f"🤗 Model pushed to the Hub in https://huggingface.co/{trainer.hub_model_id}.")
    if hasattr(trainer, "end"):  # transformers >= 5.18: finish the trackers, destroy the process group
        trainer.end()
