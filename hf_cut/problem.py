"""The constrained problem P-CUT as a plain object: per-layer losses in; the Lagrangian's terms, the layers that get a
gradient, the slacks and the metrics out (pure torch, no Trainer).

The split follows cooper's: the *problem* (:class:`LayerwiseDescentProblem`: which loss terms a forward adds, which
layers are sampled, what is measured), the *multipliers* and their *update* (:class:`~hf_cut.duals.DualVariables`).
A trainer wires it in: it asks :meth:`~LayerwiseDescentProblem.grad_layers` before the forward, adds
:meth:`~LayerwiseDescentProblem.lagrangian_terms` to the last layer's loss, logs
:meth:`~LayerwiseDescentProblem.metrics`, and calls :meth:`~LayerwiseDescentProblem.dual_step` after every optimizer
step. Everything a resume needs is :meth:`~LayerwiseDescentProblem.state_dict`: the sampler has no state of its own
(its draws are a function of the seed and the optimizer step).
"""

from __future__ import annotations

import math
import warnings

import torch

from .duals import DualVariables, descent_ratios, lagrangian_penalty, slack
from .layer_sampling import inclusion_probabilities, rotation, step_generator, systematic_sample

__all__ = ["LayerwiseDescentProblem"]


class LayerwiseDescentProblem:
    """``min ℓ_L  s.t.  ℓ_l ≤ (1 − α) ℓ_{l−1}, l = 1 … L`` (or its two baselines), for a model with L layers.

    Args:
        num_layers: L, the number of constraints.
        constrained: the primal–dual Lagrangian; ``False``: plain ERM, or deep supervision with
            ``deep_supervision_weight > 0`` (the layer losses are then still measured).
        alpha: α of the constraints, in (0, 1).
        dual_lr: η_d, the dual learning rate.
        dual_init: λ at the start.
        resilience_coef: β of the resilient relaxation (resolved: a number, or ``None`` for hard constraints).
        active: which constraints are enforced (default: all); the others keep λ = 0 and are only measured.
        detach_previous_loss: stop the gradient through ``ℓ_{l−1}`` in the constraint term.
        deep_supervision_weight: w of the deep-supervision baseline (``constrained=False`` only).
        layer_sample_size: m, the number of weighted layers that get a gradient on a step (``None``: all of them).
        layer_sampling: ``"weighted"`` (systematic sampling, π_l ∝ |c_l|, Horvitz–Thompson factors) or
            ``"rotation"`` (the next m layers in turn).
        layer_loss_interval: K, the layers are measured on every K-th optimizer step (the dual step is scaled by
            ``K / dual_update_interval`` when larger than 1).
        dual_update_interval: optimizer steps between two dual steps.
        seed: the seed the layer sample is drawn from, with the optimizer step.
    """

    def __init__(
        self,
        num_layers: int,
        *,
        constrained: bool = True,
        alpha: float = 0.1,
        dual_lr: float = 0.01,
        dual_init: float = 0.0,
        resilience_coef: float | None = None,
        active: list[bool] | None = None,
        detach_previous_loss: bool = True,
        deep_supervision_weight: float = 0.0,
        layer_sample_size: int | None = None,
        layer_sampling: str = "weighted",
        layer_loss_interval: int = 1,
        dual_update_interval: int = 1,
        seed: int = 42,
    ) -> None:
        self.num_layers = num_layers
        self.constrained = constrained
        self.alpha = alpha
        self.detach_previous_loss = detach_previous_loss
        self.deep_supervision_weight = deep_supervision_weight
        self.layer_sample_size = layer_sample_size
        self.layer_sampling = layer_sampling
        self.layer_loss_interval = layer_loss_interval
        self.dual_update_interval = dual_update_interval
        self.seed = seed
        self.duals = DualVariables(num_layers, alpha, dual_lr, dual_init, resilience_coef, active=active)
        self._sample_cache: tuple[int, tuple[float, ...], dict[int, float]] | None = None

    @property
    def has_layer_terms(self) -> bool:
        """Do the intermediate layer losses weigh in the training loss (constrained, or deep supervision)?"""
        return self.constrained or self.deep_supervision_weight > 0

    def layer_weights(self) -> list[float]:
        """``c_l = ∂(training loss)/∂ℓ_l`` for ``l = 0 … L−1`` at the current λ (ℓ_L has its gradient in any case)."""
        L = self.num_layers
        if self.constrained:
            # ∂𝓛/∂ℓ_l = λ_l − (1 − α) λ_{l+1} (the second term only without the stop-gradient); λ_l is multipliers[l−1]
            lam = [0.0] + self.duals.multipliers.tolist() + [0.0]
            if self.detach_previous_loss:
                return [lam[l] for l in range(L)]
            return [lam[l] - (1.0 - self.alpha) * lam[l + 1] for l in range(L)]
        if self.deep_supervision_weight > 0 and L > 1:
            return [0.0] + [self.deep_supervision_weight / (L - 1)] * (L - 1)
        return [0.0] * L

    def sample_layers(self, step: int) -> dict[int, float]:
        """The layers with a gradient on optimizer step ``step`` → their factor ``1/π_l`` (1 without
        ``layer_sample_size``). A function of (seed, step, λ) alone: the same on every micro-batch, every rank and
        after a resume."""
        weights = self.layer_weights()
        key = tuple(weights)
        if self._sample_cache is not None and self._sample_cache[:2] == (step, key):
            return self._sample_cache[2]
        candidates = [l for l, w in enumerate(weights) if w != 0]
        m = self.layer_sample_size
        if m is None or m >= len(candidates):
            sample = {l: 1.0 for l in candidates}
        elif self.layer_sampling == "rotation":
            position = step // self.layer_loss_interval
            sample = {l: len(candidates) / m for l in rotation(candidates, m, position)}
        else:
            pi = inclusion_probabilities(weights, m)
            sample = {l: 1.0 / pi[l] for l in systematic_sample(pi, self.draw_uniform(step))}
        self._sample_cache = (step, key, sample)
        return sample

    def draw_uniform(self, step: int) -> float:
        """u ~ U[0, 1) of systematic sampling, from (seed, step) alone."""
        return torch.rand((), generator=step_generator(self.seed, step)).item()

    def grad_layers(self, step: int) -> list[bool]:
        """For ``l = 0 … L−1``: does ``ℓ_l`` get a gradient on training step ``step`` (weighted, and sampled)?"""
        sample = self.sample_layers(step)
        return [l in sample for l in range(self.num_layers)]

    def lagrangian_terms(
        self,
        layer_losses: torch.Tensor,
        step: int,
        weight: torch.Tensor | float = 1.0,
        count: torch.Tensor | float | None = None,
        grad_layer_losses: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The part of the training loss beyond ``ℓ_L``, times ``weight`` (the batch's share of ℓ_L's normaliser);
        when constrained, the layer losses are also accumulated (``count`` items, default ``weight``) for the next
        dual step.

        Its value is the Lagrangian's ``Σ_l λ_l s_l`` (or deep supervision's ``w · mean(ℓ_1 … ℓ_{L−1})``) on
        ``layer_losses``; its gradient is ``Σ_{l ∈ S} c_l / π_l ∇ℓ_l`` over the sampled layers S, on
        ``grad_layer_losses`` when given (the gradient's larger token sample).
        """
        if self.constrained:
            if not self.duals.accumulate(layer_losses, weight if count is None else count):
                _warn_nonfinite(layer_losses, step)
            value = lagrangian_penalty(layer_losses, self.duals.multipliers, self.alpha, self.detach_previous_loss)
        elif self.deep_supervision_weight > 0 and self.num_layers > 1:
            value = self.deep_supervision_weight * layer_losses[1:-1].mean()
        else:
            return layer_losses.new_zeros(())
        sample = self.sample_layers(step)
        if grad_layer_losses is None and all(f == 1.0 for f in sample.values()):
            return weight * value  # every weighted layer, on the value sample: the plain form
        grad_losses = layer_losses if grad_layer_losses is None else grad_layer_losses
        weights = self.layer_weights()
        surrogate = sum(weights[l] * factor * grad_losses[l] for l, factor in sample.items())
        if self.constrained:  # ℓ_L's term: its gradient comes with the last layer's, never sampled
            surrogate = surrogate + self.duals.multipliers[-1].item() * grad_losses[-1]
        surrogate = torch.as_tensor(surrogate, dtype=value.dtype, device=value.device)
        return weight * (value.detach() + surrogate - surrogate.detach())

    def dual_step(self, step: int, device: torch.device | str | None = None) -> torch.Tensor | None:
        """After optimizer step ``step``: the dual step when one is due (constrained, every ``dual_update_interval``
        steps), from the slack accumulated since the last one; returns that slack, or ``None`` when none was due."""
        if not self.constrained or step % self.dual_update_interval != 0:
            return None
        # with layers measured every K-th step only, one measured step stands for K / D dual steps' slack
        scale = max(1.0, self.layer_loss_interval / self.dual_update_interval)
        return self.duals.step(device=device, scale=scale)

    def metrics(self, layer_losses: torch.Tensor, logged: torch.Tensor | None = None) -> dict[str, float]:
        """``layer_loss/{l}`` (``logged`` when given, e.g. the last layer on every token), ``slack/{l}``,
        ``constraint_satisfaction`` (share of the L constraints met) and ``descent_ratio_mean`` of one batch."""
        losses = layer_losses.detach().double()
        shown = losses if logged is None else logged.detach().double()
        slacks = slack(losses, self.alpha)
        out = {f"layer_loss/{l}": v for l, v in enumerate(shown.tolist())}
        out.update({f"slack/{l}": v for l, v in enumerate(slacks.tolist(), start=1)})
        out["constraint_satisfaction"] = (slacks <= 0).double().mean().item()
        out["descent_ratio_mean"] = descent_ratios(losses).mean().item()
        return out

    def dual_metrics(self) -> dict[str, float]:
        """``dual/{l}`` (λ now) and, when constrained, ``dual/skipped_nonfinite`` (micro-batches left out so far)."""
        out = {f"dual/{l}": v for l, v in enumerate(self.duals.multipliers.tolist(), start=1)}
        if self.constrained:
            out["dual/skipped_nonfinite"] = float(self.duals.skipped_nonfinite)
        return out

    def state_dict(self) -> dict:
        """What a resume needs: the dual variables' state (λ, the slack accumulated since the last dual step, the
        step counters). The layer sample is redrawn from (seed, step, λ)."""
        return self.duals.state_dict()

    def load_state_dict(self, state: dict, source: str | None = None) -> None:
        """Restore :meth:`state_dict` (``source`` is named in the errors)."""
        self.duals.load_state_dict(state, source=source)
        self._sample_cache = None


def _warn_nonfinite(layer_losses: torch.Tensor, step: int) -> None:
    values = layer_losses.detach().float().tolist()
    layers = [layer for layer, value in enumerate(values) if not math.isfinite(value)]
    warnings.warn(
        f"global_step {step}: non-finite layer losses at layers {layers or '(token count)'}; this micro-batch is left "
        "out of the dual step (logged as dual/skipped_nonfinite).",
        RuntimeWarning,
        stacklevel=3,
    )
