"""One entry point for the γ sweep of every task: :func:`sweep`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .sweep import SweepResult
from .tasks import TASK_NAMES

__all__ = ["sweep"]


def sweep(task: str, models: Sequence[str] | Mapping[str, Any], gammas: Sequence[float], **options: Any) -> SweepResult:
    """Sweep the noise level γ for saved models of one task, on one evaluation set; one result for every task.

    Args:
        task: ``"causal_lm"``, ``"classification"`` or ``"denoising"``.
        models: the causal LMs and classifiers as paths (or Hub names); the denoisers as ``{label: model}``.
        gammas: the noise levels γ.
        **options: the task's options — every task: ``seeds``, ``alpha``, ``batch_size``, ``noise_mean``; the text
            tasks: ``dataset``, ``labels``, ``limit`` (and ``split``, ``dataset_config``, ``max_length`` for
            classification); denoising: ``dataset`` (the test clips, required).

    Returns:
        The records (one per model, γ and noise seed), their aggregates over noise seeds and the configuration.

    ``ValueError`` names the task when it is not one of the three, and the option a task does not take.
    """
    if task == "causal_lm":
        from .sweep import ood_sweep

        return ood_sweep(models, gammas, **options)
    if task == "classification":
        from .classifier_sweep import classifier_ood_sweep

        return classifier_ood_sweep(models, gammas, **options)
    if task == "denoising":
        from .denoise_sweep import aggregate_denoise_records, denoise_sweep

        if not isinstance(models, Mapping) or "dataset" not in options:
            raise ValueError("sweep('denoising', …): `models` is {label: model} and `dataset` the test clips.")
        allowed = {"dataset", "seeds", "alpha", "batch_size", "noise_mean"}
        if set(options) - allowed:
            raise ValueError(f"sweep('denoising', …): unknown option(s) {sorted(set(options) - allowed)}; "
                             f"allowed: {sorted(allowed)}.")  # fmt: skip
        dataset = options.pop("dataset")
        records = denoise_sweep(models, dataset, gammas, **options)
        config = {"models": [{"label": label} for label in models], "num_examples": len(dataset), **options}
        return SweepResult(records=records, aggregates=aggregate_denoise_records(records), config=config)
    raise ValueError(f"sweep: `task` must be one of {', '.join(TASK_NAMES)}, got {task!r}.")
