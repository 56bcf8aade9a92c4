"""The sequence-classification task (and regression, ``num_labels = 1``): every layer's first-token state through the
model's own head (:mod:`hf_cut.readout.sequence_head`), every example weighted alike; the metric is accuracy (RMSE for
regressors)."""

from __future__ import annotations

import math

import torch

from ...readout import (
    ClassifierReadoutRequest,
    add_classifier_readout,
    base_model,
    per_example_loss,
    problem_type,
)
from ...noise import EmbeddingNoise
from . import BatchScore, EvalSession, Task

__all__ = ["CLASSIFICATION", "ensure_readout"]

_MODEL_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def ensure_readout(model) -> None:
    """Patch the layerwise readout in, unless the model computes it natively or is patched already."""
    base = base_model(model)
    if getattr(base, "supports_layer_readout", False):
        return
    own = vars(base).get("forward")  # add_classifier_readout sets an instance forward wrapping the class's
    if own is not None and getattr(own, "__wrapped__", None) is type(base).forward:
        return
    add_classifier_readout(base)


def load(path: str):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(path)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), AutoTokenizer.from_pretrained(path)


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


def open_session(model, tokenizer, dataset, batch_size: int, noise: EmbeddingNoise | None = None,
                 max_length: int | None = None, **_) -> EvalSession:  # fmt: skip
    if len(dataset) == 0:
        raise ValueError("The evaluation set is empty.")
    ensure_readout(model)
    device = next(model.parameters()).device
    owns = noise is None or not noise.attached  # a hook given detached (a trainer's after train()) is attached here
    if owns:
        noise = (noise or EmbeddingNoise(0.0)).attach(base_model(model))

    def batches():
        for inputs, labels in _batches(tokenizer, dataset, batch_size, max_length):
            yield {k: v.to(device) for k, v in inputs.items()}, labels.to(device)

    return EvalSession(model, batches, noise, owns_noise=owns, state={"kind": problem_type(base_model(model).config)})


def score(session: EvalSession, batch) -> BatchScore:
    inputs, labels = batch
    kind = session.state["kind"]
    out = session.model(**inputs, labels=labels, layer_readout=ClassifierReadoutRequest())
    logits = out.layer_logits.double()  # [L + 1, batch, num_labels]
    per_example = torch.stack([per_example_loss(layer, labels, kind) for layer in logits], 1).cpu()
    final = logits[-1]
    if kind == "regression":
        sums = {"squared": ((final.squeeze(-1) - labels.double()) ** 2).sum().item()}
    elif kind == "multi_label_classification":
        sums = {"correct": ((final > 0) == labels.bool()).double().mean(-1).sum().item()}
    else:
        sums = {"correct": (final.argmax(-1) == labels).sum().item()}
    return BatchScore(per_example.sum(0), labels.shape[0], per_example, sums)


def finish(session: EvalSession, layer_losses: list[float], count: float, sums: dict[str, float]) -> dict:
    count = int(count)
    metric = {"rmse": math.sqrt(sums["squared"] / count)} if "squared" in sums else {"accuracy": sums["correct"] / count}
    return {"loss": layer_losses[-1], **metric, "layer_losses": layer_losses, "num_examples": count}


def _eval_split(dataset, dataset_config: str | None, split: str | None):
    """The evaluation ``Dataset``: ``dataset`` as a name (None = built-in), a ``DatasetDict`` or a ``Dataset``."""
    from datasets import Dataset

    from ...data.classification import evaluation_splits, load_classification_dataset

    if isinstance(dataset, Dataset):
        return dataset, split or "test"
    if dataset is None or isinstance(dataset, str):
        dataset = load_classification_dataset(dataset or "builtin", dataset_config)
    names = evaluation_splits(dataset)
    split = split or ("test" if "test" in names else names[0] if names else None)
    if split not in dataset:
        raise ValueError(f"`split` {split!r} is not a split of the dataset (evaluation splits: {names}).")
    return dataset[split], split


def _check_label_fit(models, eval_set) -> None:
    """Before any model is loaded: the evaluation labels fit every classifier's ``num_labels`` (read from its config;
    regressors, with one output, take any float target)."""
    from transformers import AutoConfig

    from ...validation import check_class_labels

    column = "labels" if "labels" in eval_set.column_names else "label"
    if column not in eval_set.column_names:
        raise ValueError(f"--dataset: the evaluation split has no 'label' column (columns: {eval_set.column_names}).")
    values = eval_set[column]
    for model in models:
        config = AutoConfig.from_pretrained(model) if isinstance(model, str) else base_model(model[0]).config
        name = model if isinstance(model, str) else type(model[0]).__name__
        if config.num_labels > 1:
            check_class_labels(values, config.num_labels, name=f"--dataset (for --model {name})")


def prepare(models, options: dict):
    """The evaluation split: ``dataset`` None (the built-in one), a name for
    :func:`hf_cut.data.classification.load_classification_dataset` (with ``dataset_config``), a ``DatasetDict`` or a
    ``Dataset``; ``split`` (default ``test``, else the first evaluation split); its first ``limit`` rows. The labels
    are checked against every model's ``num_labels``."""
    dataset, config_name = options.pop("dataset", None), options.pop("dataset_config", None)
    eval_set, split = _eval_split(dataset, config_name, options.pop("split", None))
    limit = options.pop("limit", None)
    if limit is not None:
        eval_set = eval_set.select(range(min(limit, len(eval_set))))
    _check_label_fit(models, eval_set)
    name = dataset if isinstance(dataset, str) else "builtin" if dataset is None else "in-memory"
    return eval_set, {"dataset": name, "dataset_config": config_name, "split": split}, {
        "max_length": options.pop("max_length", None)}  # fmt: skip


CLASSIFICATION = Task("classification", load, open_session, score, finish, weighting="example", metric="accuracy",
                      prepare=prepare, scalars=("loss", "accuracy", "rmse", "pair_satisfaction", "example_satisfaction",
                                                "descent_ratio_mean"),
                      options=("dataset_config", "split", "max_length"))  # fmt: skip
