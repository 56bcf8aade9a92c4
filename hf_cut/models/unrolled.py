"""The paper's unrolled transformer for video denoising, as a Hugging Face ``PreTrainedModel``.

A video of T frames of n pixels is a matrix ``X ∈ R^{n×T}`` (frames as columns). Layer ``l = 1 … L`` maps ``X_{l−1}``
to ``X_l`` with its own ``Q_l, K_l, V_l ∈ R^{d×n}``, ``W_l ∈ R^{n×d}``, ``U_l ∈ R^{n×n}``:

    A_l = (Q_l X_{l−1})ᵀ (K_l X_{l−1})                    T × T,  A_l[s, t] = q_s · k_t
    Z_l = V_l X_{l−1} · softmax(A_l)                       softmax over s (down each column of A_l)
    X_l = σ(W_l Z_l + U_l X_{l−1})

The softmax normalises each *column* of ``A_l`` (over its row index s), so column t of ``Z_l`` is a convex combination
``Σ_s p_{st} V_l x_s`` of the columns of ``V_l X_{l−1}``: frame t attends to every frame s. The readout ψ is the
identity: every ``X_l`` is a video estimate, with per-example loss ``f = ½ Σ_t ‖x_t − [X_l]_t‖²`` against the clean
frames; ``X_0`` is the (noisy) input itself, so ``ℓ_0`` is the loss of doing nothing.

In tensors the frames are rows: ``noisy_frames`` and ``labels`` are ``[batch, T, n]``. The input passes through
``input_frames`` (an ``nn.Identity``, returned by ``get_input_embeddings()``), so :class:`hf_cut.noise.EmbeddingNoise`
perturbs the frames as it perturbs the token embeddings of a language model. The model computes its layer losses
itself (``supports_layer_readout = True``): :class:`hf_cut.ConstrainedTrainer` uses them as they are.

Importing this module registers ``model_type = "unrolled_transformer"`` with ``AutoConfig`` and ``AutoModel``, so a saved
or pushed model loads with ``AutoModel.from_pretrained`` once ``hf_cut.models.unrolled`` is imported.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, PretrainedConfig, PreTrainedModel
from transformers import initialization as init

from ..readout import LayerwiseClassifierOutput, ReadoutRequest

__all__ = [
    "ACTIVATIONS",
    "UnrolledTransformerConfig",
    "UnrolledTransformerLayer",
    "UnrolledTransformerModel",
    "UnrolledTransformerOutput",
    "frame_losses",
]

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "gelu": nn.GELU, "identity": nn.Identity}


class UnrolledTransformerConfig(PretrainedConfig):
    r"""
    Configuration of [`UnrolledTransformerModel`].

    Args:
        frame_dim (`int`, defaults to 256): n, pixels per frame (e.g. 16 × 16).
        num_frames (`int`, defaults to 8): T, frames per clip (the model works for any T; this is the data's).
        hidden_size (`int`, defaults to 32): d, the width of ``Q_l X``, ``K_l X``, ``V_l X``.
        num_hidden_layers (`int`, defaults to 10): L, the number of layers (alias ``num_layers``).
        activation (`str`, defaults to ``"relu"``): σ, one of ``relu``, ``tanh``, ``sigmoid``, ``gelu``, ``identity``.
        initializer_range (`float`, defaults to 0.02): standard deviation of the normal initialisation of ``Q, K, V, W``
            (and of the perturbation of ``U``).
        init_identity_u (`bool`, defaults to `True`): start ``U_l`` at the identity (plus noise), so that every layer
            starts close to ``X_l = σ(X_{l−1})``; `False` draws ``U_l`` like the other matrices.
    """

    model_type = "unrolled_transformer"
    attribute_map = {"num_layers": "num_hidden_layers"}

    def __init__(
        self,
        frame_dim: int = 256,
        num_frames: int = 8,
        hidden_size: int = 32,
        num_hidden_layers: int = 10,
        activation: str = "relu",
        initializer_range: float = 0.02,
        init_identity_u: bool = True,
        **kwargs,
    ) -> None:
        for name, value in (("frame_dim", frame_dim), ("num_frames", num_frames), ("hidden_size", hidden_size),
                            ("num_hidden_layers", num_hidden_layers)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
        if activation not in ACTIVATIONS:
            raise ValueError(f"`activation` must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
        if not initializer_range > 0:
            raise ValueError(f"`initializer_range` must be > 0, got {initializer_range!r}.")
        self.frame_dim = frame_dim
        self.num_frames = num_frames
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        self.activation = activation
        self.initializer_range = initializer_range
        self.init_identity_u = init_identity_u
        super().__init__(**kwargs)


@dataclass
class UnrolledTransformerOutput(LayerwiseClassifierOutput):
    """:class:`~hf_cut.readout.sequence_head.LayerwiseClassifierOutput` of the unrolled transformer.

    ``logits``: ``X_L`` as ``[batch, T, n]`` (the denoised clip); ``layer_losses``: ``[L + 1]`` batch means of
    ``½ Σ_t ‖x_t − [X_l]_t‖²``; ``layer_logits``: ``[L + 1, batch, T, n]`` every ``X_l`` (detached, only with
    ``layer_readout``); ``example_losses``: ``[batch, L + 1]`` per-example losses (detached); ``hidden_states``:
    ``(X_0, …, X_L)`` with ``output_hidden_states``.
    """

    example_losses: torch.Tensor | None = None
    hidden_states: tuple[torch.Tensor, ...] | None = None


def frame_losses(estimate: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-example ``f = ½ Σ_t ‖x_t − x̂_t‖²`` for ``[batch, T, n]`` tensors → ``[batch]``."""
    return 0.5 * (clean.to(estimate.dtype) - estimate).pow(2).flatten(1).sum(1)


class UnrolledTransformerLayer(nn.Module):
    """One layer ``X ↦ σ(W Z + U X)``, ``Z = V X · softmax_col((Q X)ᵀ (K X))``, on ``[batch, T, n]`` tensors.

    The parameters are the matrices of the formulas, named after them: ``q, k, v`` (d × n), ``w`` (n × d), ``u`` (n × n).
    """

    def __init__(self, config: UnrolledTransformerConfig) -> None:
        super().__init__()
        n, d = config.frame_dim, config.hidden_size
        self.q = nn.Parameter(torch.empty(d, n))
        self.k = nn.Parameter(torch.empty(d, n))
        self.v = nn.Parameter(torch.empty(d, n))
        self.w = nn.Parameter(torch.empty(n, d))
        self.u = nn.Parameter(torch.empty(n, n))
        self.act = ACTIVATIONS[config.activation]()

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        """``softmax((Q X)ᵀ (K X))`` normalised over its row index s: ``[batch, s, t]``, each column t sums to 1."""
        scores = (x @ self.q.T) @ (x @ self.k.T).transpose(1, 2)  # [b, s, t] = q_s · k_t
        return scores.softmax(dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = self.attention(x)
        z = probs.transpose(1, 2) @ (x @ self.v.T)  # z_t = Σ_s p_{st} V x_s  (Z = V X · P in the column picture)
        return self.act(z @ self.w.T + x @ self.u.T)


class UnrolledTransformerModel(PreTrainedModel):
    """The unrolled transformer ``X_0 → X_1 → … → X_L`` with the identity readout (see the module docstring).

    ``forward(noisy_frames, labels=None, layer_readout=None, output_hidden_states=None, return_dict=True)``:
    ``noisy_frames`` and ``labels`` (the clean frames) are ``[batch, T, n]``. With labels the output carries
    ``layer_losses`` ``ℓ_0 … ℓ_L`` (batch means, differentiable) and ``loss = ℓ_L``.
    """

    config_class = UnrolledTransformerConfig
    base_model_prefix = ""  # the model is its own base model
    main_input_name = "noisy_frames"
    supports_layer_readout = True  # ConstrainedTrainer does not patch the forward: the layer losses are native
    _no_split_modules = ["UnrolledTransformerLayer"]

    def __init__(self, config: UnrolledTransformerConfig) -> None:
        super().__init__(config)
        self.input_frames = nn.Identity()  # X_0; the hook point of EmbeddingNoise
        self.layers = nn.ModuleList(UnrolledTransformerLayer(config) for _ in range(config.num_hidden_layers))
        self.post_init()

    def get_input_embeddings(self) -> nn.Module:
        return self.input_frames

    def set_input_embeddings(self, value: nn.Module) -> None:
        self.input_frames = value

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, UnrolledTransformerLayer):
            for weight in (module.q, module.k, module.v, module.w):
                init.normal_(weight, mean=0.0, std=std)
            if not self.config.init_identity_u:
                init.normal_(module.u, mean=0.0, std=std)
            else:  # I + N(0, std²): both steps skip a tensor loaded from a checkpoint (and draw nothing then)
                init.normal_(module.u, mean=0.0, std=std)
                init.copy_(module.u, torch.eye(module.u.shape[0], dtype=module.u.dtype) + module.u)

    def forward(
        self,
        noisy_frames: torch.Tensor,
        labels: torch.Tensor | None = None,
        layer_readout: ReadoutRequest | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = True,
        **kwargs,
    ) -> UnrolledTransformerOutput | tuple:
        """Denoise ``noisy_frames`` ``[batch, T, n]``; see the class docstring.

        ``layer_readout.grad_layers[l]`` (``l = 0 … L−1``) False computes ``ℓ_l`` on a detached ``X_l``: ``X_l`` still
        feeds layer ``l + 1`` with its gradient; only the loss term (which carries no weight) is left out of backward.
        """
        kwargs.pop("num_items_in_batch", None)
        if kwargs:
            raise TypeError(f"UnrolledTransformerModel.forward got unexpected arguments {sorted(kwargs)}.")
        if noisy_frames.dim() != 3 or noisy_frames.shape[-1] != self.config.frame_dim:
            raise ValueError(
                f"`noisy_frames` must be [batch, T, {self.config.frame_dim}] (frame_dim pixels per frame), "
                f"got {tuple(noisy_frames.shape)}."
            )
        if output_hidden_states is None:
            output_hidden_states = self.config.output_hidden_states
        x = self.input_frames(noisy_frames.to(self.dtype))
        states = [x]
        for layer in self.layers:
            x = layer(x)
            states.append(x)

        L = len(self.layers)
        layer_losses = example_losses = None
        if labels is not None:
            if labels.shape != noisy_frames.shape:
                raise ValueError(f"`labels` {tuple(labels.shape)} must match `noisy_frames` {tuple(noisy_frames.shape)}.")
            grad = (layer_readout.grad_layers if layer_readout is not None else None) or [True] * L
            per_example = torch.stack(
                [frame_losses(h if l == L or grad[l] else h.detach(), labels) for l, h in enumerate(states)], dim=1
            )  # [batch, L + 1]
            layer_losses = per_example.mean(0)
            example_losses = per_example.detach()

        output = UnrolledTransformerOutput(
            loss=layer_losses[-1] if layer_losses is not None else None,
            logits=x,
            layer_losses=layer_losses,
            layer_logits=torch.stack(states).detach() if layer_readout is not None else None,
            num_examples=torch.as_tensor(noisy_frames.shape[0], device=x.device),
            example_losses=example_losses,
            hidden_states=tuple(states) if output_hidden_states else None,
        )
        return output if return_dict is not False else output.to_tuple()


AutoConfig.register(UnrolledTransformerConfig.model_type, UnrolledTransformerConfig, exist_ok=True)
AutoModel.register(UnrolledTransformerConfig, UnrolledTransformerModel, exist_ok=True)
