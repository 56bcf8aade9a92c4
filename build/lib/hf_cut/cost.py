"""How much of the layer terms a step can afford: ``layer_loss_budget`` → layers, token shares (pure torch).

One readout (final norm + ``lm_head``) forward costs ``R = 2 d V`` FLOPs per token (hidden size d, vocabulary V), a
decoder layer ``2 P_layer``; a plain SFT step costs, per token, ``c · 2 P_body + 4 R`` (c = 3 for forward and
backward, 4 with activation checkpointing; TRL's chunked loss does four head GEMMs). A layer trained through the
readout on a share f of the tokens adds ``4 R f``, a layer scored without grad on a share d adds ``R d``. With a budget
B (extra FLOPs as a share of the plain step), :func:`allocate` spends a quarter on the values of every layer (the
dual step and the logs) and the rest on the gradient: m layers on a share f of the tokens, m growing only once f
reaches 1. On Llama 3.1 8B the readout weighs ~2.4 decoder layers and the budget buys a layer on every token; on
SmolLM2-135M (a 49k vocabulary over width 576) it buys one layer on about a third of them.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["LayerBudget", "allocate", "step_flops_per_token"]

_MIN_FRACTION = 1.0 / 256


@dataclass(frozen=True)
class LayerBudget:
    """The resolved cost options: ``layer_sample_size`` m (``None``: every weighted layer),
    ``layer_loss_token_fraction`` f, ``dual_token_fraction`` d, and the FLOPs they add per token as a share of a plain
    step (``extra``, when known)."""

    layer_sample_size: int | None
    token_fraction: float
    dual_token_fraction: float
    extra: float | None = None


def step_flops_per_token(model: nn.Module, activation_checkpointing: bool) -> tuple[float, float]:
    """(plain step FLOPs per token, readout forward FLOPs per token R) of the model's *architecture*.

    The parameters are counted on a copy of the architecture built from ``model.config`` on the meta device (no
    memory, no weights), never on the live parameters: those are empty shards under ZeRO-3 (``zero.Init``), local
    shards under FSDP, packed bytes in 4-bit, and carry adapters under PEFT. The same architecture therefore gets the
    same plan in fp32, bf16, 4-bit, with LoRA and under every engine.
    """
    skeleton = _meta_copy(model)
    head = skeleton.get_output_embeddings()
    vocab, hidden = head.weight.shape
    readout = 2.0 * vocab * hidden
    embeddings = {id(p) for p in skeleton.get_input_embeddings().parameters()} | {id(p) for p in head.parameters()}
    body = sum(p.numel() for p in skeleton.parameters() if id(p) not in embeddings)
    plain = (4.0 if activation_checkpointing else 3.0) * 2.0 * body + 4.0 * readout
    return plain, readout


def _meta_copy(model: nn.Module) -> nn.Module:
    """The model's class built from its config on the meta device (PEFT wrappers: the wrapped model's class)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = copy.deepcopy(base.config)
    for name in ("quantization_config", "_pre_quantization_dtype"):  # a property of the weights, not the architecture
        if hasattr(config, name):
            delattr(config, name)
    with torch.device("meta"):
        return type(base)(config)


def allocate(budget: float, plain: float, readout: float, num_layers: int) -> LayerBudget:
    """Spend ``budget`` × ``plain`` FLOPs per token on the layer terms of a model of ``num_layers`` layers.

    >>> b = allocate(0.1, plain=100.0, readout=10.0, num_layers=4)   # 1 readout unit of budget
    >>> (b.layer_sample_size, round(b.token_fraction, 4), round(b.dual_token_fraction, 4))
    (1, 0.1875, 0.0833)
    """
    units = budget * plain / readout  # budget in readout-forward units per token
    weighted = max(1, num_layers - 1)  # ℓ_1 … ℓ_{L−1} can carry weight
    grad_units = 3 * units / 4
    m = max(1, min(weighted, math.floor(grad_units / 4)))
    fraction = min(1.0, max(_MIN_FRACTION, grad_units / (4 * m)))
    # the L − m layers without grad share the other quarter (the sampled layers' values come with their gradient)
    dual = fraction if num_layers <= m else min(fraction, max(_MIN_FRACTION, units / 4 / (num_layers - m)))
    extra = (4 * m * fraction + (num_layers - m) * dual) * readout / plain
    return LayerBudget(m, fraction, dual, extra)
