"""Layer losses of a sequence classifier through its own head ψ, applied to every layer's hidden state.

The head reads each state exactly as it reads the last one: RoBERTa-style heads (dense + tanh + projection on the
first token), BERT-style pooler + classifier, DistilBERT's pre-classifier + ReLU + classifier, DeBERTa's context
pooler + classifier. Encoders have no final norm outside their layers, so every hidden state goes to the head as it
is. As for causal LMs, :func:`add_classifier_readout` patches the model's ``forward`` so that the readout runs inside
the (possibly wrapped) forward: ``model(..., labels=y, layer_readout=ClassifierReadoutRequest())``.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers.utils import ModelOutput

__all__ = ["ClassifierReadoutRequest", "LayerwiseClassifierOutput", "add_classifier_readout", "classifier_head"]

# Heads that take the whole sequence and read its first token themselves
_SEQUENCE_HEADS = ("roberta", "xlm-roberta", "camembert", "electra", "data2vec-text", "roberta-prelayernorm", "xmod")


@dataclass
class ClassifierReadoutRequest:
    """What the patched forward computes; ``grad_layers[l]`` for ``l = 0 … L−1`` as for causal LMs (the head is
    cheap, so every layer is computed with the graph; the flag only detaches the layers that carry no weight)."""

    grad_layers: list[bool] | None = None


@dataclass
class LayerwiseClassifierOutput(ModelOutput):
    """``layer_losses``: ``[L + 1]`` batch-mean loss of every layer; ``logits``: the last layer's (the model's own);
    ``layer_logits``: ``[L + 1, batch, num_labels]``; ``num_examples``: batch size."""

    loss: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    layer_losses: torch.Tensor | None = None
    layer_logits: torch.Tensor | None = None
    num_examples: torch.Tensor | None = None


def classifier_head(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """ψ: ``[N, hidden]`` first-token states → ``[N, num_labels]`` logits, through the model's own head modules."""
    model_type = model.config.model_type
    if model_type in _SEQUENCE_HEADS and hasattr(model, "classifier"):
        return lambda h: model.classifier(h[:, None, :])
    if model_type == "distilbert":
        return lambda h: model.classifier(model.dropout(F.relu(model.pre_classifier(h))))
    if model_type in ("deberta", "deberta-v2") and hasattr(model, "pooler"):
        return lambda h: model.classifier(model.dropout(model.pooler(h[:, None, :])))
    pooler = getattr(model.base_model, "pooler", None)
    if isinstance(pooler, nn.Module) and isinstance(getattr(model, "classifier", None), nn.Module):
        dropout = getattr(model, "dropout", nn.Identity())
        return lambda h: model.classifier(dropout(pooler(h[:, None, :])))
    raise ValueError(
        f"No shared readout for {type(model).__name__} (model_type {model_type!r}): supported heads are RoBERTa-style "
        "(classifier on the first token), BERT-style (pooler + classifier), DistilBERT and DeBERTa."
    )


def problem_type(config) -> str:
    """``regression``, ``single_label_classification`` or ``multi_label_classification``, as HF infers it."""
    if config.problem_type:
        return config.problem_type
    return "regression" if config.num_labels == 1 else "single_label_classification"


def per_example_loss(logits: torch.Tensor, labels: torch.Tensor, kind: str) -> torch.Tensor:
    """The model's own loss, per example: MSE (regression), cross-entropy, or mean binary cross-entropy."""
    if kind == "regression":
        return (logits.squeeze(-1) - labels.to(logits.dtype).view(-1)) ** 2
    if kind == "multi_label_classification":
        return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none").mean(-1)
    return F.cross_entropy(logits, labels.view(-1), reduction="none")


def add_classifier_readout(model: nn.Module) -> None:
    """Patch ``model.forward`` (an ``*ForSequenceClassification``) with the layerwise readout; without
    ``layer_readout`` the forward is the model's own."""
    head = classifier_head(model)  # ValueError before any compute if the head is unknown
    previous_forward = model.forward

    @functools.wraps(type(model).forward)
    def forward(self, *args, layer_readout: ClassifierReadoutRequest | None = None, **kwargs):
        if layer_readout is None:
            return previous_forward(*args, **kwargs)
        labels = kwargs.pop("labels")
        kwargs.pop("num_items_in_batch", None)
        kwargs.update(output_hidden_states=True, return_dict=True)
        states = self.base_model(*args, **kwargs).hidden_states  # h_0 (embeddings) … h_L
        L = len(states) - 1
        grad = layer_readout.grad_layers or [True] * L
        first = [h[:, 0] if l == L or grad[l] else h[:, 0].detach() for l, h in enumerate(states)]
        batch = first[0].shape[0]
        logits = head(torch.cat(first)).view(L + 1, batch, -1)  # one head call for every layer
        kind = problem_type(self.config)
        losses = torch.stack([per_example_loss(logits[l], labels, kind).mean() for l in range(L + 1)])
        return LayerwiseClassifierOutput(
            loss=losses[-1],
            logits=logits[-1],
            layer_losses=losses,
            layer_logits=logits.detach(),
            num_examples=torch.as_tensor(batch, device=logits.device),
        )

    model.forward = types.MethodType(forward, model)
