"""Gaussian perturbation of the input embeddings, ``x̃ = x + ε`` with ``ε ~ N(μ, (γ σ_x)² I)``.

``σ_x`` is the standard deviation of the clean embedding entries of the batch, over non-padding positions, detached.
The perturbation is a forward hook on the model's input embedding module, so it acts in training, evaluation and
generation alike (each cached generation step perturbs the embeddings of its new tokens) — unless it is
``training_only``, as the trainers' hook is by default: it then perturbs only forwards in training mode, like
NEFTune. It draws from torch's global RNG, which the Trainer checkpoints: a resumed run replays the same noise.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["EmbeddingNoise"]


class EmbeddingNoise:
    """A removable Gaussian-noise hook on a model's input embeddings.

    Args:
        gamma: γ, the noise scale relative to ``σ_x``; 0 leaves the embeddings untouched (unless ``mean`` ≠ 0).
        mean: μ, the mean of the noise.
        training_only: perturb only while the embedding module is in training mode (``model.train()``); evaluation and
            generation (``model.eval()``) then see clean embeddings.

    Example:
        >>> noise = EmbeddingNoise(gamma=0.5).attach(model)
        >>> model(**batch)        # perturbed forward
        >>> noise.gamma = 1.5     # sweep γ without re-attaching
        >>> noise.remove()
    """

    def __init__(self, gamma: float = 0.0, mean: float = 0.0, training_only: bool = False) -> None:
        if gamma < 0:
            raise ValueError(f"`noise_gamma` must be >= 0, got {gamma}.")
        self.gamma = float(gamma)
        self.mean = float(mean)
        self.training_only = bool(training_only)
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self._attention_mask: torch.Tensor | None = None

    @property
    def attached(self) -> bool:
        return bool(self._handles)

    def attach(self, model: nn.Module, embeddings: nn.Module | None = None, backbone: nn.Module | None = None):
        """Register the hook on ``embeddings`` (default: ``model.get_input_embeddings()``).

        ``backbone`` is the module that receives the ``attention_mask`` keyword (default: ``model.base_model``, e.g.
        ``LlamaModel``); a pre-hook there records the mask so that padding is left out of ``σ_x``.
        """
        if self.attached:
            raise RuntimeError("EmbeddingNoise is already attached; call remove() first.")
        embeddings = embeddings if embeddings is not None else model.get_input_embeddings()
        if embeddings is None:
            raise ValueError(f"{type(model).__name__} has no input embeddings to perturb.")
        backbone = backbone if backbone is not None else getattr(model, "base_model", model)
        self._handles.append(backbone.register_forward_pre_hook(self._record_mask, with_kwargs=True))
        self._handles.append(embeddings.register_forward_hook(self._perturb))
        return self

    def remove(self) -> None:
        """Remove the hooks; the model is as before."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._attention_mask = None

    def _record_mask(self, module: nn.Module, args: tuple, kwargs: dict) -> None:
        mask = kwargs.get("attention_mask")
        self._attention_mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def sample(self, embeds: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The noise ``ε`` for ``embeds`` (``[batch, seq, dim]``); ``mask`` marks the real (non-padding) positions."""
        if self.gamma == 0.0:
            return torch.full_like(embeds, self.mean)
        clean = embeds.detach()
        if mask is not None and mask.shape == clean.shape[:2] and mask.any():
            clean = clean[mask.bool()]
        sigma = clean.float().std()
        eps = torch.randn_like(embeds) * (self.gamma * sigma).to(embeds.dtype)
        return eps + self.mean if self.mean else eps

    def _perturb(self, module: nn.Module, args: tuple, output: torch.Tensor) -> torch.Tensor | None:
        if (self.gamma == 0.0 and self.mean == 0.0) or (self.training_only and not module.training):
            return None  # exactly the clean embeddings
        mask = self._attention_mask
        if mask is not None and output.dim() == 3:
            # During cached generation the mask covers the past too: its last columns are the new tokens
            mask = mask[:, -output.shape[1] :] if mask.shape[1] >= output.shape[1] else None
        return output + self.sample(output, mask)
