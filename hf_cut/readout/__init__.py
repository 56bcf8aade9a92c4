"""The shared readout ψ: every layer's hidden state read out by the model's own head, inside the model's forward.

The contract every architecture adapter keeps: a model patched by an adapter accepts
``model(..., labels=…, layer_readout=request)``, where ``request`` is a :class:`ReadoutRequest` (at least
``grad_layers``: for ``l = 0 … L−1``, whether ``ℓ_l`` needs a gradient), and returns an output with ``loss`` (the
last layer's, the model's own) and ``layer_losses`` (``[L + 1]``, ``ℓ_0 … ℓ_L``). :func:`num_layers` is L, and
:func:`base_model` the module an adapter patches (under PEFT, the wrapped model).

- :mod:`hf_cut.readout.causal_lm`: causal LMs, final norm + ``lm_head`` on the completion tokens, chunked.
- :mod:`hf_cut.readout.sequence_head`: sequence classifiers (and regressors), the model's own head on the first token;
  the paper's unrolled transformer (:mod:`hf_cut.models.unrolled`) takes the same request.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import nn

__all__ = [
    "FINAL_NORM_NAMES",
    "ClassifierReadoutRequest",
    "LayerReadoutRequest",
    "LayerwiseCausalLMOutput",
    "LayerwiseClassifierOutput",
    "ReadoutRequest",
    "add_classifier_readout",
    "add_layer_readout",
    "base_model",
    "classifier_head",
    "find_final_norm",
    "num_layers",
    "pending_layer_readout",
    "per_example_loss",
    "problem_type",
    "validate_causal_lm",
]


@runtime_checkable
class ReadoutRequest(Protocol):
    """What every readout request carries: ``grad_layers``, for ``l = 0 … L−1`` whether ``ℓ_l`` needs a gradient
    (``None``: all of them). :class:`LayerReadoutRequest` adds the causal LM's token sampling options."""

    grad_layers: list[bool] | None


def num_layers(model: nn.Module) -> int:
    """L, the number of transformer layers, from the model's (text) config."""
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"Cannot find the number of layers of {type(model).__name__} in its config.")


def base_model(model: nn.Module) -> nn.Module:
    """The module a readout adapter patches: the model itself, or the one a PEFT wrapper holds."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


from .causal_lm import (  # noqa: E402  (the adapters use the contract above)
    FINAL_NORM_NAMES,
    LayerReadoutRequest,
    LayerwiseCausalLMOutput,
    add_layer_readout,
    find_final_norm,
    pending_layer_readout,
    validate_causal_lm,
)
from .sequence_head import (  # noqa: E402
    ClassifierReadoutRequest,
    LayerwiseClassifierOutput,
    add_classifier_readout,
    classifier_head,
    per_example_loss,
    problem_type,
)
