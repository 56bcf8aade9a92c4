"""Which layers get a gradient on a step: unbiased layer sampling for the Lagrangian (pure torch).

The training loss depends on the intermediate layer losses through ``Σ_l c_l ℓ_l`` (``c_l = λ_l`` under the default
stop-gradient; the deep-supervision weight for the baseline). Giving every layer with ``c_l ≠ 0`` a gradient costs
one readout with grad per layer; drawing a set ``S`` of m of them, layer ``l`` with probability ``π_l``, and using
``Σ_{l∈S} (c_l / π_l) ℓ_l`` has the same expected gradient (Horvitz–Thompson). :func:`inclusion_probabilities`
makes ``π`` proportional to ``|c|`` (capped at 1), which minimises the variance when the layers' gradients are of a
size; :func:`systematic_sample` draws exactly m layers with exactly those probabilities; :func:`rotation` takes the
next m layers in turn instead.
"""

from __future__ import annotations

import math

import torch

__all__ = ["inclusion_probabilities", "systematic_sample", "rotation", "step_generator"]


def inclusion_probabilities(weights: list[float], m: int) -> list[float]:
    """``π_l = min(1, m |w_l| / Σ |w|)``, the capped layers' share handed to the others until ``Σ π = min(m, #w≠0)``.

    >>> inclusion_probabilities([1.0, 1.0, 2.0], 2)
    [0.5, 0.5, 1.0]
    """
    size = [abs(w) for w in weights]
    active = [i for i, w in enumerate(size) if w > 0]
    if m >= len(active):
        return [1.0 if w > 0 else 0.0 for w in size]
    pi = [0.0] * len(size)
    capped: set[int] = set()
    while True:
        free = [i for i in active if i not in capped]
        budget = m - len(capped)
        total = sum(size[i] for i in free)
        new_caps = {i for i in free if budget * size[i] / total >= 1.0}
        if not new_caps:
            for i in free:
                pi[i] = budget * size[i] / total
            for i in capped:
                pi[i] = 1.0
            return pi
        capped |= new_caps


def systematic_sample(pi: list[float], u: float) -> list[int]:
    """Systematic sampling: the indices ``l`` whose interval ``[Σ_{j<l} π_j, Σ_{j≤l} π_j)`` holds a point of
    ``u, u + 1, u + 2, …`` (``u`` uniform in [0, 1)). Each ``l`` is chosen with probability exactly ``π_l`` (all
    ``π_l ≤ 1``), and exactly ``Σ π`` indices are chosen when that is an integer."""
    chosen, start = [], 0.0
    for index, p in enumerate(pi):
        end = start + p
        # is there an integer j with start <= u + j < end?
        first = math.ceil(start - u)
        if p > 0 and u + first < end - 1e-12:
            chosen.append(index)
        start = end
    return chosen


def rotation(candidates: list[int], m: int, position: int) -> list[int]:
    """The ``position``-th window of m consecutive ``candidates`` (cyclically): every candidate once per cycle."""
    if m >= len(candidates):
        return list(candidates)
    return [candidates[(position * m + j) % len(candidates)] for j in range(m)]


def step_generator(seed: int, step: int) -> torch.Generator:
    """A CPU generator that depends only on (seed, step): every rank, and a resumed run, draws the same layers."""
    return torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
