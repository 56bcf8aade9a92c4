"""Evaluation of constrained models: the γ sweep of every task (:func:`sweep`), per-layer loss tables and plots
(reports, the frontier and AlpacaEval live beside them)."""

from .early_exit import layers_kept_quality, save_truncated, speculative_decoding
from .entry import sweep
from .plots import layer_loss_table, layer_losses_from_metrics, plot_layer_losses, plot_layers_kept

__all__ = [
    "layer_loss_table",
    "layer_losses_from_metrics",
    "layers_kept_quality",
    "plot_layer_losses",
    "plot_layers_kept",
    "save_truncated",
    "speculative_decoding",
    "sweep",
]
