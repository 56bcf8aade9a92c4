"""Evaluation of constrained models: per-layer loss tables and plots (γ sweeps and AlpacaEval live beside them)."""

from .plots import layer_loss_table, layer_losses_from_metrics, plot_layer_losses

__all__ = ["layer_loss_table", "layer_losses_from_metrics", "plot_layer_losses"]
