"""Out-of-distribution γ sweep of video denoisers (the paper's Figure 2: RMSE against the test perturbation γ).

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

import json
import math
import os
import statistics
from collections.abc import Mapping, Sequence

from torch import nn

from ..tasks.denoising import DENOISING
from .engine import evaluate, run_sweep

__all__ = [
    "DEFAULT_GAMMAS",
    "aggregate_denoise_records",
    "denoise_sweep",
    "evaluate_denoiser",
    "plot_layer_losses_vs_gamma",
    "plot_rmse_vs_gamma",
    "rmse_from_loss",
    "rmse_table",
    "write_denoise_sweep",
]

DEFAULT_GAMMAS = (0.0, 0.5, 1.0, 1.5, 2.0)
SCALARS = ("rmse", "loss", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")
_BASELINE_WORDS = ("unconstrained", "erm", "baseline")


def evaluate_denoiser(
    model: nn.Module, dataset, gamma: float = 0.0, seed: int = 0, alpha: float = 0.1, batch_size: int = 256,
    noise_mean: float = 0.0,
) -> dict:
    """Denoise every clip of ``dataset`` (columns ``noisy_frames``, ``labels``) once at noise level ``gamma``.

    Returns ``rmse`` (root mean squared pixel error of ``X_L`` over the whole set), ``layer_rmse`` (the same for every
    ``X_l``), ``loss`` and ``layer_losses`` (means of ``½ Σ_t ‖x_t − [X_l]_t‖²``), ``monotone`` (every layer loss below
    the previous one), the constraint statistics for ``alpha`` and ``num_examples``.
    """
    if gamma < 0:
        raise ValueError(f"`gamma` must be >= 0, got {gamma}.")
    session = DENOISING.open(model, None, dataset, batch_size)
    try:
        return evaluate(DENOISING, session, gamma, seed, alpha, noise_mean)
    finally:
        session.close()


def denoise_sweep(
    models: Mapping[str, nn.Module],
    dataset,
    gammas: Sequence[float] = DEFAULT_GAMMAS,
    seeds: Sequence[int] = (0,),
    alpha: float = 0.1,
    batch_size: int = 256,
    noise_mean: float = 0.0,
) -> list[dict]:
    """One :func:`evaluate_denoiser` record per (model label, seed, γ), with ``model`` set to the label."""
    if not models:
        raise ValueError("`models` is empty: give at least one {label: model}.")
    if any(g < 0 for g in gammas):
        raise ValueError(f"`gammas` must be >= 0, got {list(gammas)}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1), got {alpha}.")
    return run_sweep(DENOISING, [(m, None) for m in models.values()], list(models), [None] * len(models), dataset,
                     gammas, seeds, alpha, batch_size, noise_mean=noise_mean, progress=False)  # fmt: skip


def aggregate_denoise_records(records: Sequence[dict]) -> list[dict]:
    """Mean and sample standard deviation over seeds (0 for one seed) per (model, γ), in first-seen order."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for record in records:
        groups.setdefault((record["model"], record["gamma"]), []).append(record)
    rows = []
    for (model, gamma), group in groups.items():
        row = {"model": model, "gamma": gamma, "num_records": len(group)}
        for name in SCALARS:
            values = [r[name] for r in group]
            row[f"{name}_mean"] = statistics.fmean(values)
            row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        row["layer_losses_mean"] = [statistics.fmean(v) for v in zip(*(r["layer_losses"] for r in group))]
        row["monotone_share"] = statistics.fmean(float(r["monotone"]) for r in group)
        rows.append(row)
    return rows


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


def _is_baseline(label: str) -> bool:
    return any(word in label.lower() for word in _BASELINE_WORDS)


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=120)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_rmse_vs_gamma(records: Sequence[dict], path: str, title: str | None = None) -> str:
    """RMSE against γ, one line per model (mean over seeds, error bars = std), as in the paper's Figure 2: baselines
    (labels with "unconstrained", "ERM" or "baseline") dashed, the others solid. Writes a PNG and returns ``path``."""
    rows = aggregate_denoise_records(records)
    fig = _figure(5.5, 4.0)
    ax = fig.add_subplot()
    for model in dict.fromkeys(r["model"] for r in rows):
        points = sorted((r["gamma"], r["rmse_mean"], r["rmse_std"]) for r in rows if r["model"] == model)
        gammas, means, stds = zip(*points)
        ax.errorbar(gammas, means, yerr=stds, marker="o", capsize=3, label=model,
                    linestyle="--" if _is_baseline(model) else "-")
    ax.set_xlabel("test perturbation γ")
    ax.set_ylabel("RMSE (↓)")
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title or "Denoising error against the input perturbation")
    return _save(fig, path)


def plot_layer_losses_vs_gamma(records: Sequence[dict], path: str) -> str:
    """Loss ``ℓ_l`` against the layer l, one panel per model and one line per γ (mean over seeds); log y axis."""
    rows = aggregate_denoise_records(records)
    models = list(dict.fromkeys(r["model"] for r in rows))
    fig = _figure(4.0 * len(models), 3.6)
    axes = fig.subplots(1, len(models), sharey=True, squeeze=False)[0]
    for ax, model in zip(axes, models):
        for row in sorted((r for r in rows if r["model"] == model), key=lambda r: r["gamma"]):
            curve = row["layer_losses_mean"]
            ax.plot(range(len(curve)), curve, marker=".", label=f"γ = {row['gamma']:g}")
        ax.set_yscale("log")
        ax.set_xlabel("layer l (0 = input)")
        ax.set_title(model)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("loss ℓ_l")
    axes[0].legend(fontsize="small")
    return _save(fig, path)


def write_denoise_sweep(records: Sequence[dict], output_dir: str, config: dict | None = None) -> dict[str, str]:
    """Write ``denoise_sweep.json`` (records, aggregates, ``config``), ``rmse_vs_gamma.png`` and
    ``layer_losses_vs_gamma.png`` to ``output_dir``; returns their paths by kind."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {
        "json": os.path.join(output_dir, "denoise_sweep.json"),
        "rmse": os.path.join(output_dir, "rmse_vs_gamma.png"),
        "layers": os.path.join(output_dir, "layer_losses_vs_gamma.png"),
    }
    payload = {"config": config or {}, "records": list(records), "aggregates": aggregate_denoise_records(records)}
    with open(paths["json"], "w", encoding="utf-8") as f:
        json.dump(payload, f, indent=2, allow_nan=True)
    plot_rmse_vs_gamma(records, paths["rmse"])
    plot_layer_losses_vs_gamma(records, paths["layers"])
    return paths


def rmse_from_loss(loss: float, pixels_per_example: int) -> float:
    """RMSE per pixel of a mean loss ``½ Σ_t ‖x_t − x̂_t‖²`` over clips of ``pixels_per_example`` pixels."""
    return math.sqrt(2.0 * loss / pixels_per_example)
