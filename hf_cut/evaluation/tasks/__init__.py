"""The three task families as small bundles of functions, for the evaluation engine (:mod:`hf_cut.evaluation.engine`).

A :class:`Task` is not a class hierarchy: it is the few functions in which a causal LM, a sequence classifier and a
video denoiser differ when a γ sweep scores them —

- ``load(path)``: the model and its processor (tokenizer, or None) from a saved directory;
- ``open(model, processor, dataset, batch_size, noise=None, **options)``: an :class:`EvalSession` — the batches of
  the evaluation set and the noise hook the sweep sets γ on (the given one, or one the session attached and removes
  on :meth:`EvalSession.close`);
- ``score(session, batch)``: a :class:`BatchScore` — per-layer loss sums, the count they are over (tokens or
  examples), the per-example layer losses, and the task metric's running sums;
- ``finish(session, layer_losses, count, metric_sums)``: the record's task fields (``loss``, the metric, the count);
- ``prepare(models, options)``: the evaluation set a sweep scores, from the task's options (it pops them: ``dataset``,
  ``limit``, and the task's own, e.g. ``split``), the fields it adds to the sweep's configuration, and the options
  its ``open`` takes (e.g. ``max_length``) — checked before any model is loaded.

``weighting`` says how a set's layer losses are averaged: ``"token"`` (every scored token alike: the causal LM) or
``"example"`` (every example alike). ``scalars`` are the record fields averaged over noise seeds, ``shares`` the
boolean ones whose share is reported, ``options`` the sweep options the task takes beyond every task's, and
``batch_size`` its default batch.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["BatchScore", "EvalSession", "Task", "get_task", "TASK_NAMES"]

TASK_NAMES = ("causal_lm", "classification", "denoising")


@dataclass
class BatchScore:
    """What one batch contributes: ``layer_loss_sums`` ``[L + 1]`` (float64), the ``count`` they sum over,
    ``per_example`` ``[n, L + 1]`` mean loss of each example at each layer, and ``metric_sums`` (name → number)."""

    layer_loss_sums: torch.Tensor
    count: float
    per_example: torch.Tensor
    metric_sums: dict[str, float] = field(default_factory=dict)


@dataclass
class EvalSession:
    """A model prepared for scoring: its batches, its noise hook, and what :meth:`close` must undo."""

    model: Any
    batches: Callable[[], Iterator[Any]]
    noise: Any
    owns_noise: bool = False
    state: dict = field(default_factory=dict)

    def close(self) -> None:
        """Remove the noise hook if this session attached it."""
        if self.owns_noise:
            self.noise.remove()


@dataclass(frozen=True)
class Task:
    name: str
    load: Callable[[str], tuple[Any, Any]]
    open: Callable[..., EvalSession]
    score: Callable[[EvalSession, Any], BatchScore]
    finish: Callable[[EvalSession, list[float], float, dict[str, float]], dict]
    weighting: str  # "token" or "example"
    metric: str  # the record's task metric: token_accuracy, accuracy (or rmse for regressors), rmse
    prepare: Callable[[Any, dict], tuple[Any, dict, dict]] | None = None
    scalars: tuple[str, ...] = ("loss", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")
    shares: tuple[str, ...] = ()
    options: tuple[str, ...] = ()
    batch_size: int = 64


def get_task(name: str) -> Task:
    """The task called ``name`` (one of :data:`TASK_NAMES`)."""
    if name == "causal_lm":
        from .causal_lm import CAUSAL_LM as task
    elif name == "classification":
        from .classification import CLASSIFICATION as task
    elif name == "denoising":
        from .denoising import DENOISING as task
    else:
        raise ValueError(f"`task` must be one of {TASK_NAMES}, got {name!r}.")
    return task
