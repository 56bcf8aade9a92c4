"""Out-of-distribution γ sweep for sequence classifiers and regressors.

The classifier counterpart of :mod:`hf_cut.evaluation.sweep`: for every model, seed and γ the evaluation split is
scored through the layerwise readout of :mod:`hf_cut.classifier_readout` (every layer's first-token state through the
model's own head), with Gaussian noise of scale γ·σ_x on the input embeddings. Records carry the keys of the causal
sweep, with ``accuracy`` (classification) or ``rmse`` (regression, ``num_labels = 1``) in place of ``token_accuracy``
and ``num_examples`` in place of ``num_tokens``; the output files have the same layout (``ood_sweep.json``,
``ood_sweep.csv``, ``metric_vs_gamma.png``, ``loss_vs_layer.png``), and
``hf_cut.evaluation.report.comparison_table(result, metric="accuracy")`` reads them.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ..classifier_readout import ClassifierReadoutRequest, add_classifier_readout, per_example_loss, problem_type
from ..noise import EmbeddingNoise
from .report import CSV_NAME, JSON_NAME, plot_sweep
from .stats import constraint_statistics
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
_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _base(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _ensure_readout(model) -> None:
    """Patch the layerwise readout in, unless the model computes it natively or is patched already."""
    base = _base(model)
    if getattr(base, "supports_layer_readout", False):
        return
    own = vars(base).get("forward")  # add_classifier_readout sets an instance forward wrapping the class's
    if own is not None and getattr(own, "__wrapped__", None) is type(base).forward:
        return
    add_classifier_readout(base)


def _batches(tokenizer, dataset, batch_size: int, max_length: int | None):
    """``(model inputs, labels)`` per batch: raw ``text`` (``text_pair``) columns are tokenised here, already
    tokenised data (``input_ids``) is padded."""
    columns = dataset.column_names
    label_column = "labels" if "labels" in columns else "label"
    if label_column not in columns:
        raise ValueError(f"The evaluation set has no `label` / `labels` column (columns: {columns}).")
    for start in range(0, len(dataset), batch_size):
        rows = dataset[start : start + batch_size]
        labels = torch.tensor(rows[label_column])
        if "input_ids" in columns:
            features = [{k: rows[k][i] for k in _MODEL_INPUTS if k in rows} for i in range(len(labels))]
            inputs = tokenizer.pad(features, return_tensors="pt")
        elif "text" in columns:
            pairs = rows["text_pair"] if "text_pair" in columns else None
            inputs = tokenizer(
                rows["text"], pairs, padding=True, truncation=True, max_length=max_length, return_tensors="pt"
            )
        else:
            raise ValueError(f"The evaluation set has neither `text` nor `input_ids` (columns: {columns}).")
        yield dict(inputs), labels


@torch.inference_mode()
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
    if len(dataset) == 0:
        raise ValueError("The evaluation set is empty.")
    _ensure_readout(model)
    kind = problem_type(_base(model).config)
    device = next(model.parameters()).device
    previous = None if noise is None else (noise.gamma, noise.mean)
    if noise is None:
        noise = EmbeddingNoise(gamma, noise_mean).attach(_base(model))
    else:
        noise.gamma, noise.mean = float(gamma), float(noise_mean)
    was_training = model.training
    model.eval()
    torch.manual_seed(seed)
    example_losses, correct, squared, count = [], 0.0, 0.0, 0
    try:
        for inputs, labels in _batches(tokenizer, dataset, batch_size, max_length):
            inputs, labels = {k: v.to(device) for k, v in inputs.items()}, labels.to(device)
            out = model(**inputs, labels=labels, layer_readout=ClassifierReadoutRequest())
            logits = out.layer_logits.double()  # [L + 1, batch, num_labels]
            example_losses.append(torch.stack([per_example_loss(layer, labels, kind) for layer in logits], 1).cpu())
            final = logits[-1]
            if kind == "regression":
                squared += ((final.squeeze(-1) - labels.double()) ** 2).sum().item()
            elif kind == "multi_label_classification":
                correct += ((final > 0) == labels.bool()).double().mean(-1).sum().item()
            else:
                correct += (final.argmax(-1) == labels).sum().item()
            count += labels.shape[0]
    finally:
        if previous is None:
            noise.remove()
        else:
            noise.gamma, noise.mean = previous
        model.train(was_training)
    losses = torch.cat(example_losses)  # [N, L + 1]
    layer_losses = losses.mean(0).tolist()
    metric = {"rmse": math.sqrt(squared / count)} if kind == "regression" else {"accuracy": correct / count}
    return {
        "gamma": float(gamma),
        "seed": int(seed),
        "loss": layer_losses[-1],
        **metric,
        "layer_losses": layer_losses,
        "num_examples": count,
        **constraint_statistics(losses, alpha),
    }


def aggregate_classifier_records(records: Sequence[dict]) -> list[dict]:
    """:func:`hf_cut.evaluation.sweep.aggregate_records` over the metrics of :data:`CLASSIFIER_METRICS`."""
    return aggregate_records(records, CLASSIFIER_METRICS)


def _load(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), AutoTokenizer.from_pretrained(path)


def _eval_split(dataset, dataset_config: str | None, split: str | None):
    """The evaluation ``Dataset``: ``dataset`` as a name (None = built-in), a ``DatasetDict`` or a ``Dataset``."""
    from datasets import Dataset

    from ..data_classification import evaluation_splits, load_classification_dataset

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
            :func:`hf_cut.data_classification.load_classification_dataset` (with ``dataset_config``, e.g.
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
    bar = tqdm(total=len(models) * len(seeds) * len(gammas), desc="γ sweep", disable=not progress)
    for label, path in zip(labels, models):
        model, tokenizer = _load(path)
        for seed in seeds:
            for gamma in gammas:
                bar.set_postfix(model=label, gamma=gamma, seed=seed)
                record = evaluate_classifier(
                    model, tokenizer, eval_set, gamma, seed, alpha, batch_size, noise_mean=noise_mean,
                    max_length=max_length,
                )  # fmt: skip
                result.records.append({"model": label, "path": path, **record})
                bar.update()
        del model
    bar.close()
    result.aggregates = aggregate_classifier_records(result.records)
    return result


def sweep_metric(result: SweepResult) -> str:
    """The task metric of a classifier sweep: ``accuracy``, or ``rmse`` for regressors."""
    return "rmse" if result.records and "rmse" in result.records[0] else "accuracy"


def write_classifier_sweep(result: SweepResult, output_dir: str) -> dict[str, str]:
    """Write ``ood_sweep.json`` (config, records, aggregates), ``ood_sweep.csv`` (one row per record),
    ``metric_vs_gamma.png`` (accuracy or RMSE, and ``ℓ_L``, against γ) and ``loss_vs_layer.png`` (a panel per γ)."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {"json": os.path.join(output_dir, JSON_NAME), "csv": os.path.join(output_dir, CSV_NAME)}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump({"config": result.config, "records": result.records, "aggregates": result.aggregates}, f, indent=2)
    metric = sweep_metric(result)
    scalars = [m for m in CLASSIFIER_METRICS if m in ("loss", metric) or m not in ("accuracy", "rmse")]
    num_layers = len(result.records[0]["layer_losses"]) if result.records else 0
    columns = ["model", "path", "gamma", "seed", *scalars, "num_examples"]
    with open(paths["csv"], "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns + [f"layer_loss_{l}" for l in range(num_layers)])
        for r in result.records:
            writer.writerow([r.get(c, "") for c in columns] + list(r["layer_losses"]))
    paths.update(plot_sweep(result, output_dir, metric, metric.upper() if metric == "rmse" else metric))
    return paths

