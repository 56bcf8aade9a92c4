"""Out-of-distribution γ sweep for sequence classifiers and regressors.

The classifier counterpart of :mod:`hf_cut.evaluation.sweep`: for every model, seed and γ the evaluation split is
scored through the layerwise readout of :mod:`hf_cut.readout.sequence_head` (every layer's first-token state through the
model's own head), with Gaussian noise of scale γ·σ_x on the input embeddings. Records carry the keys of the causal
sweep, with ``accuracy`` (classification) or ``rmse`` (regression, ``num_labels = 1``) in place of ``token_accuracy``
and ``num_examples`` in place of ``num_tokens``; the output files have the same layout (``ood_sweep.json``,
``ood_sweep.csv``, ``metric_vs_gamma.png``, ``loss_vs_layer.png``), and
``hf_cut.evaluation.report.comparison_table(result, metric="accuracy")`` reads them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..noise import EmbeddingNoise
from .tasks.classification import CLASSIFICATION
from .engine import evaluate, run_sweep
from .report import sweep_metric, write_sweep
from .sweep import SweepResult, aggregate_records, sweep_labels

__all__ = [
    "CLASSIFIER_METRICS",
    "aggregate_classifier_records",
    "classifier_ood_sweep",
    "evaluate_classifier",
    "sweep_metric",
    "write_classifier_sweep",
]

# Scalar fields aggregated over seeds, when the records have them (accuracy for classifiers, rmse for regressors)
CLASSIFIER_METRICS = ("loss", "accuracy", "rmse", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")


def evaluate_classifier(
    model,
    tokenizer,
    dataset,
    gamma: float = 0.0,
    seed: int = 0,
    alpha: float = 0.1,
    batch_size: int = 64,
    noise: EmbeddingNoise | None = None,
    noise_mean: float = 0.0,
    max_length: int | None = None,
) -> dict:
    """Score ``dataset`` once at noise level ``gamma``: per-layer loss, accuracy (or RMSE), constraint statistics.

    Args:
        model: an ``*ForSequenceClassification`` model (patched with the layerwise readout if it is not yet).
        tokenizer: its tokenizer (tokenises ``text`` / ``text_pair``, or pads ``input_ids``).
        dataset: a ``datasets.Dataset`` with ``label`` and ``text`` (``text_pair``) or tokenised columns.
        gamma: noise level γ (0 = in distribution); ``seed`` is set with ``torch.manual_seed`` before the pass.
        alpha: α of the constraints ``ℓ_l ≤ (1 − α) ℓ_{l−1}`` whose per-example satisfaction is measured.
        noise: an :class:`EmbeddingNoise` already attached to the model (e.g. ``trainer.noise``): its γ is set for the
            pass and restored after. ``None`` attaches a fresh hook and removes it after.

    Returns:
        ``gamma``, ``seed``, ``loss`` (= ``ℓ_L``), ``accuracy`` or ``rmse``, ``layer_losses`` (``ℓ_0 … ℓ_L``, means
        over the examples), ``num_examples`` and the statistics of
        :func:`~hf_cut.evaluation.stats.constraint_statistics` on the per-example layer losses.
    """
    if not gamma >= 0:
        raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    session = CLASSIFICATION.open(model, tokenizer, dataset, batch_size, noise=noise, max_length=max_length)
    try:
        return evaluate(CLASSIFICATION, session, gamma, seed, alpha, noise_mean)
    finally:
        session.close()


def aggregate_classifier_records(records: Sequence[dict]) -> list[dict]:
    """:func:`hf_cut.evaluation.sweep.aggregate_records` over the metrics of :data:`CLASSIFIER_METRICS`."""
    return aggregate_records(records, CLASSIFIER_METRICS)


def _eval_split(dataset, dataset_config: str | None, split: str | None):
    """The evaluation ``Dataset``: ``dataset`` as a name (None = built-in), a ``DatasetDict`` or a ``Dataset``."""
    from datasets import Dataset

    from ..data.classification import evaluation_splits, load_classification_dataset

    if isinstance(dataset, Dataset):
        return dataset, split or "test"
    if dataset is None or isinstance(dataset, str):
        dataset = load_classification_dataset(dataset or "builtin", dataset_config)
    names = evaluation_splits(dataset)
    split = split or ("test" if "test" in names else names[0] if names else None)
    if split not in dataset:
        raise ValueError(f"`split` {split!r} is not a split of the dataset (evaluation splits: {names}).")
    return dataset[split], split


def _check_label_fit(models: Sequence[str], eval_set) -> None:
    """Before any model is loaded: the evaluation labels fit every classifier's ``num_labels`` (read from its config;
    regressors, with one output, take any float target)."""
    from transformers import AutoConfig

    from ..validation import check_class_labels

    if "label" not in eval_set.column_names:
        raise ValueError(f"--dataset: the evaluation split has no 'label' column (columns: {eval_set.column_names}).")
    values = eval_set["label"]
    for path in models:
        num_labels = AutoConfig.from_pretrained(path).num_labels
        if num_labels > 1:
            check_class_labels(values, num_labels, name=f"--dataset (for --model {path})")


def classifier_ood_sweep(
    models: Sequence[str],
    gammas: Sequence[float],
    dataset=None,
    split: str | None = None,
    seeds: Sequence[int] = (0,),
    alpha: float = 0.1,
    batch_size: int = 64,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
    dataset_config: str | None = None,
    max_length: int | None = None,
    noise_mean: float = 0.0,
    progress: bool = True,
) -> SweepResult:
    """Sweep γ for several saved classifiers on the same evaluation split.

    Args:
        models: paths (or Hub names) of saved ``*ForSequenceClassification`` models with their tokenizers.
        gammas: noise levels γ; 0 is in distribution.
        dataset: ``None`` for the built-in held-out split; a name for
            :func:`hf_cut.data.classification.load_classification_dataset` (with ``dataset_config``, e.g.
            ``"nyu-mll/glue"`` and ``"mnli"``); or a ``DatasetDict`` / ``Dataset``.
        split: the evaluation split (default ``test``, else the first evaluation split; MNLI: ``validation_matched``
            or ``validation_mismatched``).
        seeds: noise seeds; every (model, γ) is scored once per seed.
        alpha: α of the constraints whose satisfaction is measured.
        labels: one name per model (default: the directory names); models sharing a label are pooled.
        limit: score only the first ``limit`` examples.
    """
    labels = sweep_labels(models, gammas, alpha, labels)
    eval_set, split = _eval_split(dataset, dataset_config, split)
    if limit is not None:
        eval_set = eval_set.select(range(min(limit, len(eval_set))))
    _check_label_fit(models, eval_set)
    result = SweepResult(
        config={
            "models": [{"label": label, "path": path} for label, path in zip(labels, models)],
            "gammas": [float(g) for g in gammas],
            "seeds": [int(s) for s in seeds],
            "alpha": alpha,
            "dataset": dataset if isinstance(dataset, str) else "builtin" if dataset is None else "in-memory",
            "dataset_config": dataset_config,
            "split": split,
            "num_examples": len(eval_set),
        }
    )
    result.records = run_sweep(CLASSIFICATION, list(models), labels, list(models), eval_set, gammas, seeds, alpha,
                               batch_size, noise_mean=noise_mean, progress=progress, max_length=max_length)  # fmt: skip
    result.aggregates = aggregate_classifier_records(result.records)
    return result


def write_classifier_sweep(result: SweepResult, output_dir: str) -> dict[str, str]:
    """:func:`hf_cut.evaluation.report.write_sweep` (the writer of every task; kept under this name)."""
    return write_sweep(result, output_dir)
