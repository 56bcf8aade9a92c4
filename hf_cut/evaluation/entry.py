"""One γ sweep for every task: :func:`sweep`. Nothing in it is a task's own: the evaluation set, the configuration's
fields and the metrics come from the task (:mod:`hf_cut.evaluation.tasks`), the loop from the engine
(:mod:`hf_cut.evaluation.engine`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .engine import run_sweep
from .sweep import SweepResult, aggregate_records, resolve_alpha, sweep_labels
from .tasks import TASK_NAMES, Task, get_task

__all__ = ["aggregate_task_records", "sweep", "SWEEP_OPTIONS"]

# the options of every task (a task adds its own: Task.options)
SWEEP_OPTIONS = ("dataset", "limit", "seeds", "alpha", "batch_size", "labels", "noise_mean", "progress")


def sweep(task: str, models: Sequence[str] | Mapping[str, Any], gammas: Sequence[float], **options: Any) -> SweepResult:
    """Sweep the noise level γ for models of one task, on one evaluation set; one result for every task.

    Args:
        task: ``"causal_lm"``, ``"classification"`` or ``"denoising"``.
        models: saved models as paths (or Hub names), or ``{label: model}`` / ``{label: (model, processor)}`` of
            models in memory.
        gammas: the noise levels γ.
        **options: every task's — ``dataset`` (the text tasks: None for the built-in split, a name or path, or a
            ``datasets.Dataset``; denoising: the test clips, required), ``limit``, ``seeds`` (noise seeds, default
            ``(0,)``), ``alpha`` (default: what the models' run summaries record), ``batch_size`` (default: the
            task's, 64; denoising 256), ``labels``, ``noise_mean``, ``progress``; classification's ``split``,
            ``dataset_config`` and ``max_length``.

    Returns:
        The records (one per model, noise seed and γ), their aggregates over noise seeds and the configuration.

    ``ValueError`` names the task when it is not one of the three, and the option a task does not take, before any
    model is loaded.
    """
    if task not in TASK_NAMES:
        raise ValueError(f"sweep: `task` must be one of {', '.join(TASK_NAMES)}, got {task!r}.")
    spec = get_task(task)
    allowed = set(SWEEP_OPTIONS) | set(spec.options)
    if set(options) - allowed:
        raise ValueError(f"sweep({task!r}, …): unknown option(s) {sorted(set(options) - allowed)}; "
                         f"allowed: {sorted(allowed)}.")  # fmt: skip
    options = dict(options)
    seeds = [int(s) for s in options.pop("seeds", (0,))]
    batch_size = options.pop("batch_size", None) or spec.batch_size
    noise_mean, progress = options.pop("noise_mean", 0.0), options.pop("progress", True)
    if isinstance(models, Mapping):
        items = [m if isinstance(m, tuple) else (m, None) for m in models.values()]
        paths: list[str | None] = [None] * len(items)
        alpha = options.pop("alpha", None)
        alpha = 0.1 if alpha is None else alpha  # models in memory have no run summary to read it from
        labels = sweep_labels([str(label) for label in models], gammas, alpha, options.pop("labels", None) or list(models))
    else:
        items, paths = list(models), list(models)
        alpha = resolve_alpha(options.pop("alpha", None), paths)
        labels = sweep_labels(paths, gammas, alpha, options.pop("labels", None))
    eval_set, fields, open_options = spec.prepare(items, options)
    result = SweepResult(config={
        "models": [{"label": label, **({"path": path} if path is not None else {})} for label, path in zip(labels, paths)],
        "gammas": [float(g) for g in gammas], "seeds": seeds, "alpha": alpha, **fields, "num_examples": len(eval_set),
    })  # fmt: skip
    result.records = run_sweep(spec, items, labels, paths, eval_set, gammas, seeds, alpha, batch_size,
                               noise_mean=noise_mean, progress=progress, **open_options)  # fmt: skip
    result.aggregates = aggregate_task_records(spec, result.records)
    return result


def aggregate_task_records(task: Task, records: Sequence[dict]) -> list[dict]:
    """Mean and spread over noise seeds per (model, γ) of the task's scalars, and the share of its boolean fields
    (``{name}_share``: e.g. the denoiser's monotone records)."""
    rows = aggregate_records(records, task.scalars)
    for name in task.shares:
        for row in rows:
            group = [r[name] for r in records if (r["model"], r["gamma"]) == (row["model"], row["gamma"])]
            row[f"{name}_share"] = sum(map(float, group)) / len(group)
    return rows
