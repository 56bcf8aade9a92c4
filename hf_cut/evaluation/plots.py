"""Per-layer losses ``ℓ_0 … ℓ_L`` as a table and as a plot.

A *curve* is the sequence of layer losses of one model (``ℓ_0`` reads out the embeddings, ``ℓ_L`` is the model's own
loss); several curves are compared by label, e.g. ``{"constrained": [...], "ERM": [...]}``. Under the constraints of
P-CUT each curve should fall by at least a factor ``1 − α`` from one layer to the next.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..files import save_figure

__all__ = ["layer_loss_table", "layer_losses_from_metrics", "plot_layer_losses", "plot_win_rates"]

RATIO_HEADER = "ratio ℓ_l/ℓ_{l−1}"


def layer_losses_from_metrics(metrics: Mapping[str, float], prefix: str = "eval_") -> list[float]:
    """The layer losses ``[ℓ_0, …, ℓ_L]`` held in ``metrics`` under ``{prefix}layer_loss/{l}``, in layer order.

    ``metrics`` is what ``trainer.evaluate()`` returns (``prefix="eval_"``) or one training log (``prefix=""``).
    Raises ``KeyError`` if there are none, ``ValueError`` if a layer is missing between 0 and the last one found.
    """
    pattern = re.compile(re.escape(prefix) + r"layer_loss/(\d+)$")
    by_layer = {int(m.group(1)): float(v) for k, v in metrics.items() if (m := pattern.match(k))}
    if not by_layer:
        raise KeyError(f"no '{prefix}layer_loss/<l>' key in the metrics (keys: {sorted(metrics)[:10]} …)")
    missing = sorted(set(range(max(by_layer) + 1)) - set(by_layer))
    if missing:
        raise ValueError(f"layer losses missing for layers {missing}")
    return [by_layer[layer] for layer in range(len(by_layer))]


def _format(value: float | None, digits: int) -> str:
    if value is None:
        return ""
    return f"{value:.{digits}f}"


def layer_loss_table(curves: Mapping[str, Sequence[float]], digits: int = 4) -> str:
    """A markdown table of layer losses: one row per layer ``l = 0 … L``, one column per label.

    With a single curve a last column holds the descent ratio ``ℓ_l / ℓ_{l−1}`` (empty for ``l = 0``); constraint ``l``
    holds when it is at most ``1 − α``. Curves of different lengths leave empty cells.
    """
    if not curves:
        raise ValueError("`curves` is empty: give at least one label with its layer losses")
    labels = list(curves)
    num_rows = max(len(c) for c in curves.values())
    header = ["layer", *labels]
    single = len(labels) == 1
    if single:
        header.append(RATIO_HEADER)
    rows = []
    for layer in range(num_rows):
        cells = [str(layer)]
        for label in labels:
            curve = curves[label]
            cells.append(_format(float(curve[layer]) if layer < len(curve) else None, digits))
        if single:
            curve = curves[labels[0]]
            ratio = None
            if layer >= 1 and curve[layer - 1] != 0:
                ratio = float(curve[layer]) / float(curve[layer - 1])
            cells.append(_format(ratio, digits))
        rows.append(cells)
    widths = [max(len(header[i]), *(len(r[i]) for r in rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.rjust(w) for c, w in zip(cells, widths)) + " |"

    separator = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(header), separator, *(line(r) for r in rows)])


def plot_layer_losses(
    curves: Mapping[str, Sequence[float]], path: str, title: str | None = None, log_scale: bool = False
) -> str:
    """Plot loss against layer index ``0 … L`` (one line with markers per label) and save it as a PNG at ``path``.

    Linear y axis (logarithmic with ``log_scale``, for real LLMs whose ℓ_0 is tens of nats above ℓ_L), x ticks at the
    integer layers. Uses matplotlib's Agg canvas directly (no display, no pyplot state).
    Creates the parent directory if needed and returns ``path``.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not curves:
        raise ValueError("`curves` is empty: give at least one label with its layer losses")
    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    num_layers = 0
    for label, curve in curves.items():
        values = [float(v) for v in curve]
        ax.plot(range(len(values)), values, marker="o", label=label)
        num_layers = max(num_layers, len(values))
    step = max(1, math.ceil(num_layers / 20))  # at most ~20 tick labels (a 32-layer model gets every other layer)
    ax.set_xticks(range(0, num_layers, step))
    ax.set_xlabel("layer l (0 = embeddings)")
    ax.set_ylabel(r"loss $\ell_l$")
    ax.set_yscale("log" if log_scale else "linear")
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, format="png")


def plot_win_rates(results: Sequence[Mapping[str, Any]], path: str | os.PathLike, title: str | None = None) -> str:
    """Plot win rate (%) ± standard error against γ, with the 50% line, as a PNG (Agg canvas, no pyplot state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    gammas = [r["gamma"] for r in results]
    rates = [r["win_rate"] for r in results]
    errors = [r.get("standard_error") or 0.0 for r in results]
    ax.errorbar(gammas, rates, yerr=errors, marker="o", capsize=3, label="model vs reference")
    ax.axhline(50.0, color="gray", linestyle="--", linewidth=1, label="parity (50%)")
    ax.set_xlabel("noise level γ")
    ax.set_ylabel("win rate (%)")
    ax.set_ylim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return save_figure(fig, path, format="png")


def plot_layers_kept(results: Mapping[str, Mapping[str, Sequence[float]]], path: str, title: str | None = None) -> str:
    """Two panels against the layers kept k: held-out token accuracy (%) and loss (log scale), one line per model
    (``results``: label → the output of :func:`~hf_cut.evaluation.early_exit.layers_kept_quality`). Returns ``path``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not results:
        raise ValueError("`results` is empty: give at least one model's layers-kept quality")
    fig = Figure(figsize=(10.0, 4.0), dpi=120)
    FigureCanvasAgg(fig)
    acc_ax, loss_ax = fig.subplots(1, 2)
    for label, r in results.items():
        acc_ax.plot(r["layers"], [100 * a for a in r["token_accuracy"]], marker="o", markersize=3, label=label)
        loss_ax.plot(r["layers"], r["loss"], marker="o", markersize=3, label=label)
    for ax, ylabel in ((acc_ax, "held-out token accuracy (%)"), (loss_ax, "held-out loss (nats)")):
        ax.set_xlabel("layers kept k (readout of h_k)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
    loss_ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return save_figure(fig, path, format="png")
