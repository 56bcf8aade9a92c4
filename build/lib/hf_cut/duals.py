"""Dual variables of the layerwise descent constraints (pure torch, no Hugging Face import).

For a model with L layers and layer losses ``ℓ_0 … ℓ_L`` (``ℓ_0`` reads out the input embeddings), the
constraints of P-CUT are ``ℓ_l ≤ (1 − α) ℓ_{l−1}`` for ``l = 1 … L``. Their slacks are

    s_l = ℓ_l − (1 − α) ℓ_{l−1}            (s_l ≤ 0  ⇔  constraint l satisfied)

and the Lagrangian is ``ℓ_L + Σ_l λ_l s_l``. Training alternates a primal step on the Lagrangian (λ fixed) with a
projected dual ascent step. With hard constraints (``β = ∞``) it is

    λ_l ← max(0, λ_l + η_d ŝ_l)

where ``ŝ_l`` is the slack estimated on the data of the step. With the resilient relaxation ``u_l = λ_l / β`` the
step is taken implicitly (a proximal step on the relaxed dual, ``−λ²/2β`` evaluated at the new λ):

    λ_l ← max(0, (λ_l + η_d ŝ_l) / (1 + η_d / β))

Its fixed point is ``β·ŝ_l``, as for the explicit step ``λ_l + η_d (ŝ_l − λ_l / β)``, but it contracts by
``1 / (1 + η_d/β) < 1`` for every ``η_d > 0``: the explicit step multiplies λ by ``1 − η_d/β`` and flips sign every
step once ``η_d > β``. For ``η_d ≪ β`` the two agree to first order in ``η_d/β``. :class:`DualVariables` keeps λ and the running estimate ``ŝ``; :func:`slack` and
:func:`lagrangian_penalty` are the differentiable pieces the trainer adds to the loss.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

__all__ = ["DualVariables", "descent_ratios", "lagrangian_penalty", "proximal_dual_step", "slack"]


def slack(layer_losses: torch.Tensor, alpha: float, detach_previous: bool = True) -> torch.Tensor:
    """Slacks ``s_l = ℓ_l − (1 − α) ℓ_{l−1}`` for ``l = 1 … L``.

    Args:
        layer_losses: ``[L + 1]`` tensor ``ℓ_0 … ℓ_L``.
        alpha: required fractional decrease per layer, ``0 < α < 1``.
        detach_previous: stop the gradient through ``ℓ_{l−1}``. Differentiated literally, the slack rewards *raising*
            the previous layer's loss, which lets a model satisfy the constraints by making early layers worse.

    Returns:
        ``[L]`` tensor of slacks; its value does not depend on ``detach_previous``.
    """
    previous = layer_losses[:-1].detach() if detach_previous else layer_losses[:-1]
    return layer_losses[1:] - (1.0 - alpha) * previous


def lagrangian_penalty(
    layer_losses: torch.Tensor, duals: torch.Tensor, alpha: float, detach_previous: bool = True
) -> torch.Tensor:
    """Constraint part of the Lagrangian, ``Σ_l λ_l s_l`` (λ is treated as a constant)."""
    return (duals.detach().to(layer_losses) * slack(layer_losses, alpha, detach_previous)).sum()


def descent_ratios(layer_losses: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """Ratios ``ℓ_l / ℓ_{l−1}`` for ``l = 1 … L`` (detached); below ``1 − α`` means constraint l holds."""
    losses = layer_losses.detach()
    return losses[1:] / losses[:-1].clamp(min=eps)


def proximal_dual_step(
    multipliers: torch.Tensor, slacks: torch.Tensor, step_size: float, resilience_coef: float | None
) -> torch.Tensor:
    """One projected dual step of size ``η``: ``[λ + η ŝ]₊`` for hard constraints (``β`` None or ∞), else the
    implicit resilient step ``[(λ + η ŝ) / (1 + η/β)]₊``, stable for every ``η > 0`` (fixed point ``β·ŝ``)."""
    ascent = multipliers + step_size * slacks
    if resilience_coef is not None and not math.isinf(resilience_coef):
        ascent = ascent / (1.0 + step_size / resilience_coef)
    return ascent.clamp(min=0.0)


class DualVariables:
    """One non-negative multiplier ``λ_l`` per constraint, updated by projected dual ascent.

    Between two dual steps the trainer calls :meth:`accumulate` once per micro-batch with the (detached) layer losses
    and the number of tokens they were estimated on; :meth:`step` turns the token-weighted means into slacks, averages
    them over all data-parallel ranks, and takes one ascent step. Accumulating sums rather than slacks makes one batch
    of 4N tokens and four micro-batches of N tokens give the same dual update.

    Args:
        num_constraints: L, the number of constraints (layers of the model).
        alpha: α in ``ℓ_l ≤ (1 − α) ℓ_{l−1}``.
        lr: dual learning rate η_d.
        init: initial value of every λ_l.
        resilience_coef: β of the resilient relaxation ``u_l = λ_l / β``; ``None`` for hard constraints.
        active: which constraints are enforced (default: all); the others keep λ_l = 0 and are only measured.
    """

    def __init__(
        self,
        num_constraints: int,
        alpha: float,
        lr: float,
        init: float = 0.0,
        resilience_coef: float | None = None,
        active: list[bool] | torch.Tensor | None = None,
    ) -> None:
        if num_constraints < 1:
            raise ValueError(f"`num_constraints` must be at least 1, got {num_constraints}.")
        self.active = torch.ones(num_constraints, dtype=torch.bool) if active is None else torch.as_tensor(active)
        if self.active.shape != (num_constraints,):
            raise ValueError(f"`active` must hold {num_constraints} flags, got shape {tuple(self.active.shape)}.")
        self.alpha = float(alpha)
        self.lr = float(lr)
        self.resilience_coef = resilience_coef
        self.multipliers = torch.full((num_constraints,), float(init), dtype=torch.float64) * self.active
        self.last_slack = torch.zeros(num_constraints, dtype=torch.float64)
        self._loss_sums = torch.zeros(num_constraints + 1, dtype=torch.float64)
        self._num_tokens = torch.zeros((), dtype=torch.float64)
        self.num_steps = 0
        self.skipped_nonfinite = 0

    def __len__(self) -> int:
        return self.multipliers.numel()

    def relaxation(self) -> torch.Tensor:
        """``u_l = λ_l / β`` (zero for hard constraints)."""
        if self.resilience_coef is None or math.isinf(self.resilience_coef):
            return torch.zeros_like(self.multipliers)
        return self.multipliers / self.resilience_coef

    def accumulate(self, layer_losses: torch.Tensor, num_tokens: int | float | torch.Tensor) -> bool:
        """Add the layer losses ``ℓ_0 … ℓ_L`` of one micro-batch, estimated on ``num_tokens`` tokens.

        A micro-batch with a non-finite loss (NaN, ±inf: an fp16 overflow, a bad example) or token count is left out
        and counted in :attr:`skipped_nonfinite`; the others of the step still count. Returns whether it was added.
        """
        losses = layer_losses.detach().to("cpu", torch.float64)
        if losses.numel() != self._loss_sums.numel():
            raise ValueError(f"Expected {self._loss_sums.numel()} layer losses, got {losses.numel()}.")
        weight = float(num_tokens)
        if not (math.isfinite(weight) and bool(torch.isfinite(losses).all())):
            self.skipped_nonfinite += 1
            return False
        self._loss_sums += losses * weight
        self._num_tokens += weight
        return True

    def step(self, device: torch.device | str | None = None, scale: float = 1.0) -> torch.Tensor:
        """One projected ascent step from the slack accumulated since the last step; returns that slack.

        ``scale`` multiplies the step size (``η = scale · η_d``; ``λ ← [(λ + η ŝ) / (1 + η/β)]₊``, or
        ``[λ + η ŝ]₊`` for hard constraints): the number of dual steps' worth of optimizer steps the accumulated slack
        stands for, when layers are measured on only some steps.

        Under ``torch.distributed`` the accumulated sums are all-reduced first, so every rank takes the same step.
        ``device`` is where the all-reduce runs (the rank's accelerator for NCCL); it defaults to the CPU.
        """
        sums = torch.cat([self._loss_sums, self._num_tokens.view(1)])
        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            if device is None and dist.get_backend() == "nccl":
                device = torch.device("cuda", torch.cuda.current_device())
            reduced = sums.to(device or "cpu")
            dist.all_reduce(reduced, op=dist.ReduceOp.SUM)
            sums = reduced.cpu()
        loss_sums, num_tokens = sums[:-1], sums[-1]
        self._loss_sums.zero_()
        self._num_tokens.zero_()
        # nothing (finite) seen since the last step, on any rank: keep λ (the reduced sums are the same on every rank,
        # so every rank decides alike)
        if num_tokens <= 0 or not bool(torch.isfinite(sums).all()):
            return self.last_slack.clone()
        estimate = slack(loss_sums / num_tokens, self.alpha)
        self.multipliers = proximal_dual_step(self.multipliers, estimate, scale * self.lr, self.resilience_coef)
        self.multipliers = self.multipliers * self.active
        self.last_slack = estimate
        self.num_steps += 1
        return estimate.clone()

    def state_dict(self) -> dict[str, torch.Tensor | int | float | None]:
        """Everything needed to resume exactly: λ, the last slack and the slack accumulated since the last step."""
        return {
            "multipliers": self.multipliers.clone(),
            "last_slack": self.last_slack.clone(),
            "loss_sums": self._loss_sums.clone(),
            "num_tokens": self._num_tokens.clone(),
            "num_steps": self.num_steps,
            "skipped_nonfinite": self.skipped_nonfinite,
            "alpha": self.alpha,
            "lr": self.lr,
            "resilience_coef": self.resilience_coef,
        }

    def load_state_dict(self, state: dict, source: str | None = None) -> None:
        """Restore :meth:`state_dict`; the number of constraints must match and every value be finite.

        ``source`` (e.g. the checkpoint file) is named in the error messages.
        """
        where = f"{source}: " if source else ""
        multipliers = torch.as_tensor(state["multipliers"], dtype=torch.float64)
        if multipliers.shape != self.multipliers.shape:
            raise ValueError(
                f"{where}checkpoint holds {multipliers.numel()} dual variables, the model has "
                f"{self.multipliers.numel()} constraints."
            )
        for key in ("multipliers", "last_slack", "loss_sums", "num_tokens"):
            values = torch.as_tensor(state[key], dtype=torch.float64)
            if not bool(torch.isfinite(values).all()):
                bad = torch.nonzero(~torch.isfinite(values.reshape(-1))).flatten().tolist()
                raise ValueError(
                    f"{where}the dual variables' `{key}` holds non-finite values (entries {bad[:10]}); refusing to "
                    "resume from it. Resume from an earlier checkpoint, or delete the file to restart λ at `dual_init`."
                )
        self.multipliers = multipliers.clone()
        self.last_slack = torch.as_tensor(state["last_slack"], dtype=torch.float64).clone()
        self._loss_sums = torch.as_tensor(state["loss_sums"], dtype=torch.float64).clone()
        self._num_tokens = torch.as_tensor(state["num_tokens"], dtype=torch.float64).clone()
        self.num_steps = int(state["num_steps"])
        self.skipped_nonfinite = int(state.get("skipped_nonfinite", 0))
