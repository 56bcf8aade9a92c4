"""Out-of-distribution γ sweep: per-layer losses, the task metric and constraint statistics as the input noise grows.

For every model, seed and γ, the evaluation set is scored with the embedding-noise hook of the trainer at that γ,
through the same layerwise readout the trainer uses. ``torch.manual_seed(seed)`` is set before each pass, so models
that share a tokenizer see the same noise draws.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["SweepResult", "ood_sweep", "aggregate_records", "SCALAR_METRICS"]

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
    dataset: str | None = None,
    seeds: Sequence[int] = (0,),
    alpha: float = 0.1,
    batch_size: int = 64,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
    noise_mean: float = 0.0,
    progress: bool = True,
) -> SweepResult:
    """Sweep γ for several saved models on the same evaluation set.

    Args:
        models: paths (or Hub names) of saved causal LMs with their tokenizers; ``"smollm2"`` is the packaged
            SmolLM2-135M-Instruct (:func:`hf_cut.models.packaged_smollm2_path`).
        gammas: noise levels γ; 0 is in distribution.
        dataset: ``None`` for the built-in held-out split, a Hub name or local path for
            :func:`hf_cut.data.load_instruction_dataset` (its ``test`` split is used), or a ``datasets.Dataset`` (used
            as it is: a recipe's own held-out split).
        seeds: noise seeds; every (model, γ) is scored once per seed.
        alpha: α of the constraints whose satisfaction is measured.
        labels: one name per model (default: the directory names). Models may share a label (e.g. the same recipe
            trained with several seeds): the aggregates then pool them, and their spread is over training seeds too.
        limit: score only the first ``limit`` examples.
    """
    from ..data import load_instruction_dataset

    from datasets import Dataset

    labels = sweep_labels(models, gammas, alpha, labels)
    in_memory = isinstance(dataset, Dataset)
    eval_set = dataset if in_memory else load_instruction_dataset(dataset or "builtin")["test"]
    if limit is not None:
        eval_set = eval_set.select(range(min(limit, len(eval_set))))
    result = SweepResult(
        config={
            "models": [{"label": label, "path": path} for label, path in zip(labels, models)],
            "gammas": [float(g) for g in gammas],
            "seeds": [int(s) for s in seeds],
            "alpha": alpha,
            "dataset": "in-memory" if in_memory else dataset or "builtin",
            "num_examples": len(eval_set),
        }
    )
    from .tasks.causal_lm import CAUSAL_LM
    from .engine import run_sweep

    result.records = run_sweep(CAUSAL_LM, list(models), labels, list(models), eval_set, gammas, seeds, alpha, batch_size,
                               noise_mean=noise_mean, progress=progress)  # fmt: skip
    result.aggregates = aggregate_records(result.records)
    return result
