"""Out-of-distribution γ sweep: per-layer losses, the task metric and constraint statistics as the input noise grows.

For every model, seed and γ, the evaluation set is scored with the embedding-noise hook of the trainer at that γ,
through the same layerwise readout the trainer uses. ``torch.manual_seed(seed)`` is set before each pass, so models
that share a tokenizer see the same noise draws.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

__all__ = ["SweepResult", "ood_sweep", "aggregate_records", "resolve_alpha", "SCALAR_METRICS"]

# Scalar fields of a record aggregated over seeds (mean and spread)
SCALAR_METRICS = ("loss", "token_accuracy", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")


@dataclass
class SweepResult:
    """One record per (model, γ, seed) and the aggregates over seeds per (model, γ)."""

    records: list[dict] = field(default_factory=list)
    aggregates: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def aggregate_records(records: Sequence[dict], metrics: Sequence[str] = SCALAR_METRICS) -> list[dict]:
    """Mean and spread (sample standard deviation; 0 for a single record) over seeds, per (model label, γ), of the
    scalar ``metrics`` that every record of the group has, and of the layer losses."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for record in records:
        groups.setdefault((record["model"], record["gamma"]), []).append(record)
    aggregates = []
    for (model, gamma), group in groups.items():
        row = {"model": model, "gamma": gamma, "num_records": len(group)}
        for name in (m for m in metrics if all(m in r for r in group)):
            values = [r[name] for r in group]
            row[f"{name}_mean"] = statistics.fmean(values)
            row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        layers = list(zip(*(r["layer_losses"] for r in group)))
        row["layer_losses_mean"] = [statistics.fmean(v) for v in layers]
        row["layer_losses_std"] = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in layers]
        aggregates.append(row)
    return aggregates


def resolve_alpha(alpha: float | None, models: Sequence) -> float:
    """α of the constraints a sweep measures: ``alpha`` when given, else the ``descent_alpha`` every model's run
    summary (``layer_losses.json`` in its folder, written by the recipes) records. Models trained with different α
    are refused (a sweep measures one α); models that record none are measured at α = 0.1 with a warning in the log
    (a later release will require ``alpha`` then)."""
    if alpha is not None:
        return alpha
    recorded = {}
    for model in models:
        summary = os.path.join(model, "layer_losses.json") if isinstance(model, str) else None
        if summary and os.path.isfile(summary):
            with open(summary, encoding="utf-8") as f:
                recorded[model] = json.load(f).get("descent_alpha")
    values = {value for value in recorded.values() if value is not None}
    if len(values) > 1:
        raise ValueError(f"`alpha` (--alpha): the models were trained with different α ({recorded}); give the α the "
                         "sweep measures.")  # fmt: skip
    if values and len(recorded) == len(models) and None not in recorded.values():
        return float(values.pop())
    missing = [m for m in models if recorded.get(m) is None]
    logger.warning(
        f"`alpha` (--alpha) not given, and no run summary records it for {missing}: constraint satisfaction is "
        "measured at α = 0.1. Give `alpha`; a later release will require it when no summary records it."
    )
    return 0.1


def sweep_labels(
    models: Sequence[str], gammas: Sequence[float], alpha: float, labels: Sequence[str] | None
) -> list[str]:
    """Check a sweep's arguments before any model is loaded; the labels (default: the directory names)."""
    from ..validation import check_alpha, check_gammas, check_labels

    check_gammas(gammas, name="gammas")
    check_alpha(alpha, name="alpha")
    check_labels(labels, models, name="labels")
    return list(labels) if labels else [os.path.basename(os.path.normpath(m)) for m in models]


def ood_sweep(
    models: Sequence[str],
    gammas: Sequence[float],
    dataset=None,
    seeds: Sequence[int] = (0,),
    alpha: float | None = None,
    batch_size: int = 64,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
    noise_mean: float = 0.0,
    progress: bool = True,
) -> SweepResult:
    """``sweep("causal_lm", …)`` (:func:`hf_cut.evaluation.sweep`), under the name and signature of earlier
    releases."""
    from .entry import sweep

    return sweep("causal_lm", models, gammas, dataset=dataset, seeds=seeds, alpha=alpha, batch_size=batch_size,
                 labels=labels, limit=limit, noise_mean=noise_mean, progress=progress)  # fmt: skip
