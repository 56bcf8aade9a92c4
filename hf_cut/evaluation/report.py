"""Writing a γ sweep (JSON, CSV, PNG) and the side-by-side comparison table a paper would show."""

from __future__ import annotations

import csv
import json
import math
import os
import statistics
from collections.abc import Sequence

from ..files import atomic_write, save_figure, write_json
from ..model_card import BASELINE
from .sweep import SCALAR_METRICS, SweepResult, aggregate_records

__all__ = [
    "comparison_table",
    "load_sweep",
    "merge_sweeps",
    "plot_sweep",
    "sweep_file",
    "sweep_metric",
    "training_seed_summary",
    "training_seed_table",
    "write_sweep",
]

JSON_NAME = "ood_sweep.json"
CSV_NAME = "ood_sweep.csv"
LEGACY_JSON_NAMES = ("denoise_sweep.json",)  # written by earlier releases, still read
METRIC_NAMES = {"token_accuracy": "token accuracy", "accuracy": "accuracy", "rmse": "RMSE"}  # axis labels


def sweep_metric(result: SweepResult) -> str:
    """The task metric of a sweep's records: ``token_accuracy`` (causal LM), ``accuracy`` (classifier) or ``rmse``
    (regressor, denoiser)."""
    first = result.records[0] if result.records else {}
    return next((m for m in ("token_accuracy", "accuracy", "rmse") if m in first), "token_accuracy")


def write_sweep(result: SweepResult, output_dir: str) -> dict[str, str]:
    """Write ``ood_sweep.json`` (config, records, aggregates), ``ood_sweep.csv`` (one row per record) and the plots
    (``metric_vs_gamma.png``, ``loss_vs_layer.png``), for a sweep of any task."""
    os.makedirs(output_dir, exist_ok=True)
    paths = {"json": os.path.join(output_dir, JSON_NAME), "csv": os.path.join(output_dir, CSV_NAME)}
    write_json(paths["json"], {"config": result.config, "records": result.records, "aggregates": result.aggregates},
               indent=2)
    metric = sweep_metric(result)
    first = result.records[0] if result.records else {}
    count = "num_tokens" if "num_tokens" in first else "num_examples"
    num_layers = len(first.get("layer_losses", []))
    columns = ["model", "path", "gamma", "seed", "loss", metric, "pair_satisfaction", "example_satisfaction",
               "descent_ratio_mean", count]  # fmt: skip
    with atomic_write(paths["csv"], newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns + [f"layer_loss_{l}" for l in range(num_layers)])
        for r in result.records:
            writer.writerow([r.get(c, "") for c in columns] + list(r["layer_losses"]))
    paths.update(plot_sweep(result, output_dir, metric))
    return paths


def sweep_file(path: str) -> str:
    """The sweep file ``path`` names: the file itself, or in a directory its ``ood_sweep.json`` (or the
    ``denoise_sweep.json`` an earlier release's denoiser sweep wrote); ``ValueError`` naming ``path`` when none is."""
    if os.path.isfile(path):
        return path
    for name in (JSON_NAME, *LEGACY_JSON_NAMES):
        if os.path.isfile(os.path.join(path, name)):
            return os.path.join(path, name)
    raise ValueError(f"sweeps: {path!r} is neither an {JSON_NAME} nor a directory holding one")


def load_sweep(path: str) -> SweepResult:
    """Read a sweep: ``ood_sweep.json``, or the directory holding it (see :func:`sweep_file`)."""
    file = sweep_file(path)
    with open(file, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ValueError(f"{file}: not a sweep file (invalid JSON: {err}).") from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("records", "aggregates")):
        raise ValueError(f"{file}: not a sweep file (a JSON object with the lists `records` and `aggregates`, as "
                         "hf-cut sweep writes it).")  # fmt: skip
    return SweepResult(records=data["records"], aggregates=data["aggregates"], config=data.get("config", {}))


def measurement_key(record: dict) -> tuple:
    """What identifies one measurement of a sweep: the model (label and path), the γ and the noise seed."""
    return record["model"], record.get("path"), record["gamma"], record.get("seed")


def merge_sweeps(
    paths: Sequence[str],
    relabel: dict[str, str] | None = None,
    max_gamma: float | None = None,
    keep: Sequence[str] | None = None,
) -> SweepResult:
    """The records of several sweeps (``ood_sweep.json`` files or their directories) as one result, labels renamed
    by ``relabel`` (old → new), records above ``max_gamma`` dropped, only the labels in ``keep`` (after renaming)
    kept when it is given, the aggregates recomputed.

    A record is one measurement: a model (label and path), a γ and a noise seed. Where two sweeps hold the same
    measurement — a results file merged again with the sweeps that extend it — the later one is kept, once, in the
    place of the first."""
    relabel = relabel or {}
    records: dict[tuple, dict] = {}
    for path in paths:
        for record in load_sweep(path).records:
            record = {**record, "model": relabel.get(record["model"], record["model"])}
            if (max_gamma is None or record["gamma"] <= max_gamma) and (keep is None or record["model"] in keep):
                records[measurement_key(record)] = record
    kept = list(records.values())
    return SweepResult(records=kept, aggregates=aggregate_records(kept), config={"merged_from": list(paths)})


def select_noise_seeds(result: SweepResult, noise_seeds: Sequence[int]) -> SweepResult:
    """The measurements of ``result`` drawn with the given noise seeds only, the aggregates recomputed: one table
    per noise draw, to see whether a comparison survives another draw of the evaluation noise."""
    wanted = set(noise_seeds)
    kept = [r for r in result.records if r.get("seed") in wanted]
    if not kept:
        held = sorted({r.get("seed") for r in result.records}, key=str)
        raise ValueError(f"`noise_seeds` {sorted(wanted)}: the sweep holds noise seeds {held} only.")
    return SweepResult(records=kept, aggregates=aggregate_records(kept), config=result.config)


def compare_measurements(reference: SweepResult, other: SweepResult, metric: str = "token_accuracy") -> list[dict]:
    """Each model of ``other`` against the same measurements in ``reference`` (label, path, γ and noise seed equal):
    how many were found and the largest absolute difference of ``metric`` (None when none was) — whether a re-run
    reproduces a committed sweep."""
    known = {measurement_key(r): r[metric] for r in reference.records}
    rows: dict[tuple, dict] = {}
    for r in other.records:
        row = rows.setdefault((r["model"], r.get("path")), {"model": r["model"], "path": r.get("path"),
                                                          "compared": 0, "max_abs_diff": None})  # fmt: skip
        old = known.get(measurement_key(r))
        if old is not None:
            diff = abs(r[metric] - old)
            row["compared"] += 1
            row["max_abs_diff"] = diff if row["max_abs_diff"] is None else max(row["max_abs_diff"], diff)
    return list(rows.values())


def _by_model(aggregates: Sequence[dict]) -> dict[str, list[dict]]:
    models: dict[str, list[dict]] = {}
    for row in aggregates:
        models.setdefault(row["model"], []).append(row)
    return {m: sorted(rows, key=lambda r: r["gamma"]) for m, rows in models.items()}


def plot_sweep(
    result: SweepResult, output_dir: str, metric: str = "token_accuracy", metric_name: str | None = None
) -> dict[str, str]:
    """``metric_vs_gamma.png`` (the task metric and the loss against γ, one line per model, ± spread over seeds) and
    ``loss_vs_layer.png`` (one panel per γ, one line per model); the metric's axis is named by ``metric_name``
    (default: its name in :data:`METRIC_NAMES`)."""
    metric_name = metric_name or METRIC_NAMES.get(metric, metric)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = _by_model(result.aggregates)
    paths = {}
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, name in zip(axes, (metric, "loss"), (metric_name, "loss ℓ_L")):
        for model, rows in models.items():
            ax.errorbar(
                [r["gamma"] for r in rows],
                [r[f"{key}_mean"] for r in rows],
                yerr=[r[f"{key}_std"] for r in rows],
                marker="o",
                capsize=3,
                label=model,
            )
        ax.set_xlabel("noise level γ")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle("Held-out quality as the input perturbation grows (mean ± std over seeds)")
    fig.tight_layout()
    paths["metric_plot"] = os.path.join(output_dir, "metric_vs_gamma.png")
    save_figure(fig, paths["metric_plot"], format="png", dpi=120)
    plt.close(fig)

    gammas = sorted({r["gamma"] for r in result.aggregates})
    fig, axes = plt.subplots(1, len(gammas), figsize=(3.6 * len(gammas), 3.6), sharey=True, squeeze=False)
    for ax, gamma in zip(axes[0], gammas):
        for model, rows in models.items():
            row = next((r for r in rows if r["gamma"] == gamma), None)
            if row is not None:
                ax.plot(range(len(row["layer_losses_mean"])), row["layer_losses_mean"], marker="o", label=model)
        ax.set_title(f"γ = {gamma:g}")
        ax.set_xlabel("layer l")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss ℓ_l")
    axes[0][0].legend()
    fig.tight_layout()
    paths["layer_plot"] = os.path.join(output_dir, "loss_vs_layer.png")
    save_figure(fig, paths["layer_plot"], format="png", dpi=120)
    plt.close(fig)
    return paths


def comparison_table(result: SweepResult, baseline: str | None = None, metric: str = "token_accuracy") -> str:
    """Markdown table: per γ and model, the metric (mean ± std), its difference to the baseline model, the share of
    satisfied (example, layer) constraints and the mean descent ratio. The baseline defaults to the model labelled
    ``ERM`` (or ``ERM …``, e.g. ``ERM γ=1``), else the last model."""
    models = _by_model(result.aggregates)
    if not models:
        return "(empty sweep)"
    if baseline is None:
        baseline = next((m for m in models if m == BASELINE or m.startswith((BASELINE + " ", BASELINE + ","))),
                        list(models)[-1])  # fmt: skip
    if baseline not in models:
        raise ValueError(f"`baseline` {baseline!r} is not one of the models {list(models)}.")
    base = {r["gamma"]: r for r in models[baseline]}
    lines = [
        f"| γ | model | {metric} | Δ vs {baseline} | loss ℓ_L | satisfied pairs | examples all satisfied | mean ratio |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for gamma in sorted(base):
        for model, rows in models.items():
            row = next((r for r in rows if r["gamma"] == gamma), None)
            if row is None:
                continue
            delta = row[f"{metric}_mean"] - base[gamma][f"{metric}_mean"]
            lines.append(
                f"| {gamma:g} | {model} | {row[f'{metric}_mean']:.4f} ± {row[f'{metric}_std']:.4f} | "
                f"{delta:+.4f} | {row['loss_mean']:.4f} ± {row['loss_std']:.4f} | "
                f"{row['pair_satisfaction_mean']:.3f} | {row['example_satisfaction_mean']:.3f} | "
                f"{row['descent_ratio_mean_mean']:.3f} |"
            )
    return "\n".join(lines)


def training_seed_summary(
    result: SweepResult, metrics: Sequence[str] = (*SCALAR_METRICS, "accuracy", "rmse")
) -> dict[str, dict]:
    """Per model label and γ, each metric as mean ± std over *training* seeds: every saved model (``path``) is first
    averaged over its noise seeds, then the models sharing a label are compared (std 0 for a single model).

    Returns ``{label: {gamma: {"num_models": n, "<metric>_mean": …, "<metric>_std": …}}}``.
    """
    per_model: dict[tuple[str, float, str], list[dict]] = {}
    for record in result.records:
        per_model.setdefault((record["model"], record["gamma"], record.get("path", "")), []).append(record)
    grouped: dict[str, dict[float, list[dict]]] = {}
    for (label, gamma, _), records in per_model.items():
        means = {m: statistics.fmean(r[m] for r in records) for m in metrics if all(m in r for r in records)}
        grouped.setdefault(label, {}).setdefault(gamma, []).append(means)
    summary: dict[str, dict] = {}
    for label, by_gamma in grouped.items():
        summary[label] = {}
        for gamma, models in sorted(by_gamma.items()):
            row: dict = {"num_models": len(models)}
            for m in (m for m in metrics if all(m in x for x in models)):
                values = [x[m] for x in models]
                row[f"{m}_mean"] = statistics.fmean(values)
                row[f"{m}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
            summary[label][gamma] = row
    return summary


def training_seed_table(
    result: SweepResult, metric: str = "token_accuracy", percent: bool = True, rows: str = "gamma",
    digits: int | None = None,
) -> str:
    """Markdown table of ``metric`` as mean ± std over training seeds (noise seeds averaged first; see
    :func:`training_seed_summary`), in % when ``percent``: one row per γ and one column per model label
    (``rows="gamma"``), or one row per label, with its number of training seeds, and one column per γ
    (``rows="models"``, for studies of many settings). ``digits``: decimals shown (default 1 in %, 3 otherwise)."""
    if rows not in ("gamma", "models"):
        raise ValueError(f"rows must be 'gamma' or 'models', got {rows!r}")
    summary = training_seed_summary(result)
    labels = list(summary)
    gammas = sorted({g for by_gamma in summary.values() for g in by_gamma})
    scale, unit, default = (100.0, "%", 1) if percent else (1.0, "", 3)
    digits = default if digits is None else digits

    def cell(label: str, gamma: float) -> str:
        row = summary[label].get(gamma)
        if row is None or f"{metric}_mean" not in row:
            return ""
        return f"{scale * row[f'{metric}_mean']:.{digits}f} ± {scale * row[f'{metric}_std']:.{digits}f}{unit}"

    def seeds(label: str) -> int:
        return max(r["num_models"] for r in summary[label].values())

    if rows == "models":
        lines = ["| setting | seeds | " + " | ".join(f"γ = {g:g}" for g in gammas) + " |",
                 "| --- | --- |" + " --- |" * len(gammas)]  # fmt: skip
        lines += [f"| {label} | {seeds(label)} | " + " | ".join(cell(label, g) for g in gammas) + " |"
                  for label in sorted(labels)]  # fmt: skip
        return "\n".join(lines)
    lines = ["| γ | " + " | ".join(f"{label} (n={seeds(label)})" for label in labels) + " |",
             "| --- |" + " --- |" * len(labels)]  # fmt: skip
    lines += [f"| {g:g} | " + " | ".join(cell(label, g) for label in labels) + " |" for g in gammas]
    return "\n".join(lines)


def difference_table(
    result: SweepResult, pairs: Sequence[tuple[str, str]], metric: str = "token_accuracy", percent: bool = True,
    digits: int | None = None,
) -> str:
    """Markdown table: for each pair of labels (A, B) and each γ both were swept at, ``mean_A − mean_B`` over training
    seeds (see :func:`training_seed_summary`), the combined spread ``√(std_A² + std_B²)`` in brackets, and ``*`` when
    the difference exceeds it — is A ahead of B by more than the spread, γ by γ."""
    summary = training_seed_summary(result)
    for label in (label for pair in pairs for label in pair):
        if label not in summary:
            raise ValueError(f"`differences`: no model is labelled {label!r}; the labels are {sorted(summary)}.")
    gammas = sorted(set.intersection(*(set(summary[a]) & set(summary[b]) for a, b in pairs)))
    scale, default = (100.0, 1) if percent else (1.0, 3)
    digits = default if digits is None else digits
    lines = ["| comparison | " + " | ".join(f"γ = {g:g}" for g in gammas) + " |", "| --- |" + " --- |" * len(gammas)]
    for a, b in pairs:
        cells = []
        for g in gammas:
            x, y = summary[a][g], summary[b][g]
            diff = scale * (x[f"{metric}_mean"] - y[f"{metric}_mean"])
            spread = scale * math.hypot(x[f"{metric}_std"], y[f"{metric}_std"])  # as frontier.py combines spreads
            cells.append(f"{diff:+.{digits}f} ({spread:.{digits}f}){'*' if abs(diff) > spread else ''}")
        lines.append(f"| {a} − {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
