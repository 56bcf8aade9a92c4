"""Per-example constraint statistics, as reported in the paper (share of satisfied constraints, mean descent ratio).

``example_losses`` is an ``[N, L + 1]`` array: for each example, its mean loss at every layer ``ℓ_0 … ℓ_L``.
"""

from __future__ import annotations

import torch

__all__ = ["constraint_statistics", "per_example_layer_losses"]


def per_example_layer_losses(
    token_log_probs: torch.Tensor, positions: torch.Tensor, num_examples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean NLL of every example at every layer from per-token log-probabilities.

    Args:
        token_log_probs: ``[L + 1, k]`` log p(target) of each layer on ``k`` scored tokens.
        positions: ``[k, 2]`` (example row, position) of those tokens.
        num_examples: number of rows of the batch.

    Returns:
        ``([num_examples, L + 1]`` mean NLL, NaN for an example without scored token; ``[num_examples]`` token counts).
    """
    rows = positions[:, 0]
    counts = torch.zeros(num_examples, dtype=torch.float64, device=rows.device).index_add_(
        0, rows, torch.ones_like(rows, dtype=torch.float64)
    )
    sums = torch.zeros(num_examples, token_log_probs.shape[0], dtype=torch.float64, device=rows.device)
    sums.index_add_(0, rows, -token_log_probs.t().double())
    means = sums / counts[:, None]
    means[counts == 0] = float("nan")
    return means, counts


def constraint_statistics(example_losses: torch.Tensor, alpha: float) -> dict[str, float | list[float]]:
    """Constraint satisfaction of ``ℓ_l ≤ (1 − α) ℓ_{l−1}`` per example.

    Returns:
        ``pair_satisfaction``: share of (example, layer) pairs that satisfy their constraint;
        ``example_satisfaction``: share of examples that satisfy every constraint;
        ``descent_ratio_mean``: mean of ``ℓ_l / ℓ_{l−1}`` over examples and layers;
        ``layer_satisfaction``: share of examples satisfying constraint l, for l = 1 … L.
        Examples with a NaN loss (no scored token) are left out.
    """
    losses = torch.as_tensor(example_losses, dtype=torch.float64)
    losses = losses[~torch.isnan(losses).any(dim=1)]
    if losses.numel() == 0:
        raise ValueError("constraint_statistics: no example with a finite loss at every layer.")
    previous, current = losses[:, :-1], losses[:, 1:]
    satisfied = current <= (1.0 - alpha) * previous
    ratios = current / previous.clamp(min=1e-12)
    return {
        "pair_satisfaction": satisfied.double().mean().item(),
        "example_satisfaction": satisfied.all(dim=1).double().mean().item(),
        "descent_ratio_mean": ratios.mean().item(),
        "layer_satisfaction": satisfied.double().mean(dim=0).tolist(),
    }
