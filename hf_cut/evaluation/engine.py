"""One γ-sweep engine for every task (:mod:`hf_cut.evaluation.tasks`): score a prepared model at a noise level and seed, and
sweep models × noise seeds × γ into a :class:`~hf_cut.evaluation.sweep.SweepResult`.

The noise hook's ownership lives here and in the task's session alone: :func:`evaluate` sets γ (and μ) on the
session's hook for one pass and restores what it found; a session that attached its own hook removes it on close.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from .tasks import EvalSession, Task
from .tasks.stats import constraint_statistics

__all__ = ["evaluate", "run_sweep"]


@torch.inference_mode()
def evaluate(task: Task, session: EvalSession, gamma: float, seed: int, alpha: float, noise_mean: float = 0.0) -> dict:
    """Score the session's evaluation set once at noise level ``gamma`` (``torch.manual_seed(seed)`` first): the
    record ``{gamma, seed, <the task's fields>, <constraint statistics>}``."""
    model, noise = session.model, session.noise
    previous, was_training = (noise.gamma, noise.mean, noise.training_only), model.training
    model.eval()
    # γ is set explicitly: it acts on these evaluation forwards even on a trainer's training-only hook
    noise.gamma, noise.mean, noise.training_only = float(gamma), float(noise_mean), False
    torch.manual_seed(seed)
    sums, count, examples, metric_sums = None, 0.0, [], {}
    try:
        for batch in session.batches():
            scored = task.score(session, batch)
            sums = scored.layer_loss_sums if sums is None else sums + scored.layer_loss_sums
            count += scored.count
            examples.append(scored.per_example)
            for key, value in scored.metric_sums.items():
                metric_sums[key] = metric_sums.get(key, 0.0) + value
    finally:
        noise.gamma, noise.mean, noise.training_only = previous
        model.train(was_training)
    if not examples:
        raise ValueError("The evaluation set is empty.")
    per_example = torch.cat(examples)  # [N, L + 1]
    if task.weighting == "token":
        layer_losses = (sums / count).tolist() if count else []
    else:
        layer_losses = per_example.mean(0).tolist()
    fields = task.finish(session, layer_losses, count, metric_sums)
    return {"gamma": float(gamma), "seed": int(seed), **fields, **constraint_statistics(per_example, alpha)}


def run_sweep(
    task: Task,
    models: Sequence,
    labels: Sequence[str],
    paths: Sequence[str | None],
    eval_set,
    gammas: Sequence[float],
    seeds: Sequence[int],
    alpha: float,
    batch_size: int,
    noise_mean: float = 0.0,
    progress: bool = True,
    **options,
) -> list[dict]:
    """One record per (model, noise seed, γ), in that loop order, with ``model`` (its label) and, where known,
    ``path``. ``models`` are paths (loaded with the task's ``load``) or ``(model, processor)`` pairs."""
    records = []
    bar = tqdm(total=len(models) * len(seeds) * len(gammas), desc="γ sweep", disable=not progress)
    for item, label, path in zip(models, labels, paths):
        model, processor = task.load(item) if isinstance(item, str) else item
        session = task.open(model, processor, eval_set, batch_size, **options)
        try:
            for seed in seeds:
                for gamma in gammas:
                    bar.set_postfix(model=label, gamma=gamma, seed=seed)
                    record = evaluate(task, session, gamma, seed, alpha, noise_mean)
                    records.append({"model": label, **({"path": path} if path is not None else {}), **record})
                    bar.update()
        finally:
            session.close()
        del session, model
    bar.close()
    return records
