"""The classifier γ sweep under the names of earlier releases: each is one call of the one sweep
(:func:`hf_cut.evaluation.sweep`) with ``task="classification"``, whose task (:mod:`hf_cut.evaluation.tasks.classification`)
holds everything a classifier's evaluation needs. Records carry ``accuracy`` (``rmse`` for regressors) and
``num_examples``; the files are every task's (:func:`hf_cut.evaluation.report.write_sweep`)."""

from __future__ import annotations

from collections.abc import Sequence

from ..noise import EmbeddingNoise
from .entry import sweep
from .report import sweep_metric, write_sweep
from .sweep import SweepResult, aggregate_records
from .tasks.classification import CLASSIFICATION

__all__ = [
    "CLASSIFIER_METRICS",
    "aggregate_classifier_records",
    "classifier_ood_sweep",
    "evaluate_classifier",
    "sweep_metric",
    "write_classifier_sweep",
]

CLASSIFIER_METRICS = CLASSIFICATION.scalars


def evaluate_classifier(model, tokenizer, dataset, gamma: float = 0.0, seed: int = 0, alpha: float = 0.1,
                        batch_size: int = 64, noise: EmbeddingNoise | None = None, noise_mean: float = 0.0,
                        max_length: int | None = None) -> dict:  # fmt: skip
    """One record of ``dataset`` at ``gamma``: ``sweep("classification", {"model": (model, tokenizer)}, [gamma], …)``.
    ``noise`` is not needed (the sweep's own hook is used) and kept for the signature of earlier releases."""
    if not gamma >= 0:
        raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
    result = sweep("classification", {"model": (model, tokenizer)}, [gamma], dataset=dataset, seeds=[seed],
                   alpha=alpha, batch_size=batch_size, noise_mean=noise_mean, max_length=max_length,
                   progress=False)  # fmt: skip
    return {key: value for key, value in result.records[0].items() if key != "model"}


def aggregate_classifier_records(records: Sequence[dict]) -> list[dict]:
    """:func:`hf_cut.evaluation.sweep.aggregate_records` over the classifier's metrics."""
    return aggregate_records(records, CLASSIFIER_METRICS)


def classifier_ood_sweep(models: Sequence[str], gammas: Sequence[float], dataset=None, split: str | None = None,
                         seeds: Sequence[int] = (0,), alpha: float | None = None, batch_size: int = 64,
                         labels: Sequence[str] | None = None, limit: int | None = None,
                         dataset_config: str | None = None, max_length: int | None = None, noise_mean: float = 0.0,
                         progress: bool = True) -> SweepResult:  # fmt: skip
    """``sweep("classification", …)``."""
    return sweep("classification", models, gammas, dataset=dataset, split=split, seeds=seeds, alpha=alpha,
                 batch_size=batch_size, labels=labels, limit=limit, dataset_config=dataset_config,
                 max_length=max_length, noise_mean=noise_mean, progress=progress)  # fmt: skip


def write_classifier_sweep(result: SweepResult, output_dir: str) -> dict[str, str]:
    """:func:`hf_cut.evaluation.report.write_sweep` (the writer of every task)."""
    return write_sweep(result, output_dir)
