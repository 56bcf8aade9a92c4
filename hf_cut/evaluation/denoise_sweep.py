"""The denoiser γ sweep under the names of earlier releases, and its RMSE table (the paper's Figure 2: RMSE against
the test perturbation γ). The sweep itself is the one sweep (:func:`hf_cut.evaluation.sweep`, ``task="denoising"``).

For every model, seed and γ, the test clips are denoised with :class:`hf_cut.noise.EmbeddingNoise` at that γ on the
model's input frames (``x̃ = x + ε``, ``ε ~ N(μ, (γ σ_x)² I)``, on top of the data's own training corruption).
``torch.manual_seed(seed)`` is set before each pass and the clips are taken in the same batches, so models with the
same frame shape see the same noise draws. A record holds the RMSE of the last layer (and of every layer), the
layer losses ``ℓ_0 … ℓ_L`` (``½ Σ_t ‖x_t − [X_l]_t‖²``, means over clips) and the per-example constraint statistics of
:func:`hf_cut.evaluation.stats.constraint_statistics`.

The models are those of :mod:`hf_cut.models.unrolled` or anything with the same interface: ``get_input_embeddings()``
and ``forward(noisy_frames=…, labels=…)`` returning ``example_losses`` ``[batch, L + 1]`` and ``logits``. They must
carry no other active noise hook (a trainer's: ``trainer.noise.remove()`` first).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

from torch import nn

from .entry import aggregate_task_records, sweep
from .report import write_sweep
from .sweep import SweepResult
from .tasks.denoising import DENOISING

__all__ = [
    "DEFAULT_GAMMAS",
    "aggregate_denoise_records",
    "denoise_sweep",
    "evaluate_denoiser",
    "rmse_from_loss",
    "rmse_table",
    "write_denoise_sweep",
]

DEFAULT_GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
SCALARS = DENOISING.scalars


def evaluate_denoiser(
    model: nn.Module, dataset, gamma: float = 0.0, seed: int = 0, alpha: float = 0.1, batch_size: int = 256,
    noise_mean: float = 0.0,
) -> dict:
    """Denoise every clip of ``dataset`` (columns ``noisy_frames``, ``labels``) once at noise level ``gamma``:
    ``sweep("denoising", {"model": model}, [gamma], …)``.

    Returns ``rmse`` (root mean squared pixel error of ``X_L`` over the whole set), ``layer_rmse`` (the same for every
    ``X_l``), ``loss`` and ``layer_losses`` (means of ``½ Σ_t ‖x_t − [X_l]_t‖²``), ``monotone`` (every layer loss below
    the previous one), the constraint statistics for ``alpha`` and ``num_examples``.
    """
    if gamma < 0:
        raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
    result = sweep("denoising", {"model": model}, [gamma], dataset=dataset, seeds=[seed], alpha=alpha,
                   batch_size=batch_size, noise_mean=noise_mean, progress=False)  # fmt: skip
    return {key: value for key, value in result.records[0].items() if key != "model"}


def denoise_sweep(
    models: Mapping[str, nn.Module],
    dataset,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    seeds: Sequence[int] = (0,),
    alpha: float = 0.1,
    batch_size: int = 256,
    noise_mean: float = 0.0,
) -> list[dict]:
    """The records of ``sweep("denoising", models, gammas, dataset=dataset, …)``, one per (model label, seed, γ)."""
    if not models:
        raise ValueError("`models` is empty: give at least one {label: model}.")
    return sweep("denoising", dict(models), gammas, dataset=dataset, seeds=seeds, alpha=alpha, batch_size=batch_size,
                 noise_mean=noise_mean, progress=False).records  # fmt: skip


def aggregate_denoise_records(records: Sequence[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds (0 for one seed) per (model, γ), in first-seen order
    (:func:`~hf_cut.evaluation.sweep.aggregate_records` over the denoiser's scalars), with ``monotone_share``."""
    return aggregate_task_records(DENOISING, records)


def rmse_table(records: Sequence[dict], digits: int = 4) -> str:
    """Markdown table of RMSE (mean ± std over seeds): one row per γ, one column per model."""
    rows = aggregate_denoise_records(records)
    models = list(dict.fromkeys(r["model"] for r in rows))
    gammas = sorted({r["gamma"] for r in rows})
    cell = {(r["model"], r["gamma"]): r for r in rows}
    lines = ["| γ | " + " | ".join(f"RMSE {m}" for m in models) + " |", "|---:|" + "---:|" * len(models)]
    for gamma in gammas:
        values = []
        for model in models:
            row = cell.get((model, gamma))
            if row is None:
                values.append("")
            elif row["num_records"] > 1:
                values.append(f"{row['rmse_mean']:.{digits}f} ± {row['rmse_std']:.{digits}f}")
            else:
                values.append(f"{row['rmse_mean']:.{digits}f}")
        lines.append(f"| {gamma:g} | " + " | ".join(values) + " |")
    return "\n".join(lines)


def write_denoise_sweep(records: Sequence[dict], output_dir: str, config: dict | None = None) -> dict[str, str]:
    """Write the sweep as every task's is (:func:`hf_cut.evaluation.report.write_sweep`: ``ood_sweep.json``,
    ``ood_sweep.csv``, ``metric_vs_gamma.png`` with RMSE against γ, ``loss_vs_layer.png``); returns their paths by
    kind, ``"rmse"`` and ``"layers"`` naming the two plots. Directories of earlier releases (``denoise_sweep.json``)
    are still read by :func:`~hf_cut.evaluation.report.load_sweep`."""
    result = SweepResult(records=list(records), aggregates=aggregate_denoise_records(records), config=config or {})
    paths = write_sweep(result, output_dir)
    return {**paths, "rmse": paths["metric_plot"], "layers": paths["layer_plot"]}


def rmse_from_loss(loss: float, pixels_per_example: int) -> float:
    """RMSE per pixel of a mean loss ``½ Σ_t ‖x_t − x̂_t‖²`` over clips of ``pixels_per_example`` pixels."""
    return math.sqrt(2.0 * loss / pixels_per_example)
