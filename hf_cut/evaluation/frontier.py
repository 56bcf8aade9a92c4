"""Accuracy in distribution against accuracy under noise: every method's settings as points, and whether one method's
points lie beyond another's frontier by more than the spread over training seeds.

Each point is one label of one or more γ sweeps (``ood_sweep.json``): its models (training seeds) are averaged over
their noise seeds first, then summarised as mean ± std over training seeds (:func:`training_seed_summary`). A label
belongs to the method whose name it starts with (``"ERM γ=1"`` → ``ERM``), so a method's settings — its knobs and its
γ_train — form its cloud of points.

Beyond a frontier, beyond the spread: point P of one method lies beyond method B's frontier at noise level γ when
every point Q of B that is at least as accurate in distribution (``Q.clean ≥ P.clean − s_clean``) is less accurate
under noise by more than the spread (``P.noisy − Q.noisy > s_noisy``), with ``s = √(std_P² + std_Q²)`` the combined
standard deviation over training seeds of the two points; where no point of B is that accurate in distribution, P
must not be less accurate under noise than any point of B by more than the spread. A point with one training seed has
no spread of its own: its verdict rests on the other's spread alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..files import save_figure, write_json
from .report import merge_sweeps, training_seed_summary
from .sweep import SweepResult

__all__ = [
    "DEFAULT_METHODS",
    "beyond_frontier",
    "frontier_points",
    "frontier_report",
    "frontier_table",
    "merge_sweeps",
    "pick_gammas",
    "plot_frontier",
]

DEFAULT_METHODS = ("ERM", "deep supervision", "constrained", "pretrained")
# metrics where lower is better (a denoiser's RMSE, a loss): "at least as good" and "beyond" flip their sign
LOWER_IS_BETTER = ("rmse", "loss")


def _method(label: str, methods: Sequence[str]) -> str | None:
    matches = [m for m in methods if label == m or label.startswith((m + " ", m + ","))]
    return max(matches, key=len) if matches else None


def frontier_points(result: SweepResult, gammas: Sequence[float], metric: str = "token_accuracy",
                    methods: Sequence[str] = DEFAULT_METHODS) -> list[dict]:  # fmt: skip
    """One point per label that has γ = 0 and every γ of ``gammas``: ``{"label", "method", "num_seeds", "clean":
    {"mean", "std"}, "<γ>": {"mean", "std"}, …}`` (keys of the noisy values: ``f"{γ:g}"``)."""
    summary = training_seed_summary(result, metrics=(metric,))
    points = []
    for label, by_gamma in summary.items():
        if 0.0 not in by_gamma or any(g not in by_gamma for g in gammas):
            continue
        point = {"label": label, "method": _method(label, methods), "num_seeds": by_gamma[0.0]["num_models"],
                 "lower_is_better": metric in LOWER_IS_BETTER}  # fmt: skip
        for key, gamma in [("clean", 0.0), *((f"{g:g}", g) for g in gammas)]:
            row = by_gamma[gamma]
            point[key] = {"mean": row[f"{metric}_mean"], "std": row[f"{metric}_std"]}
        points.append(point)
    return points


def beyond_frontier(point: dict, others: Sequence[dict], gamma: float) -> bool | None:
    """Does ``point`` lie beyond the frontier of ``others`` at noise level ``gamma``, by more than the spread (module
    doc)? None when ``others`` is empty. For a metric where lower is better (``point["lower_is_better"]``: RMSE),
    "more accurate" reads "lower"."""
    if not others:
        return None
    key = f"{gamma:g}"
    sign = -1.0 if point.get("lower_is_better") else 1.0

    def spread(q: dict, field: str) -> float:
        return math.hypot(point[field]["std"], q[field]["std"])

    def ahead(q: dict, field: str) -> float:  # how much better the point is than q
        return sign * (point[field]["mean"] - q[field]["mean"])

    as_accurate = [q for q in others if -ahead(q, "clean") >= -spread(q, "clean")]
    if as_accurate:
        return all(ahead(q, key) > spread(q, key) for q in as_accurate)
    return all(ahead(q, key) >= -spread(q, key) for q in others)


def pick_gammas(
    points: Sequence[dict], baseline: str = "ERM", available: Sequence[float] = (), floor: float = 0.0
) -> tuple[float, float]:
    """(mild, strong) from the baseline's best point under noise: mild = the largest γ at which it keeps ≥ 90% of its
    γ = 0 accuracy, strong = the smallest γ at which it has lost half (the largest γ when it never has). Accuracy is
    counted above ``floor`` (what a predictor that never reads its input scores, :mod:`hf_cut.evaluation.floor`): a
    model at the floor has lost all it had, not half."""
    base = [p for p in points if p["method"] == baseline]
    if not base or not available:
        raise ValueError(f"no point of the baseline {baseline!r}, or no γ > 0: give --mild and --strong")
    gammas = sorted(g for g in available if g > 0)
    best = max(base, key=lambda p: p[f"{gammas[-1]:g}"]["mean"])
    clean = best["clean"]["mean"] - floor
    kept = [g for g in gammas if best[f"{g:g}"]["mean"] - floor >= 0.9 * clean]
    lost = [g for g in gammas if best[f"{g:g}"]["mean"] - floor <= 0.5 * clean]
    return (kept[-1] if kept else gammas[0]), (lost[0] if lost else gammas[-1])


def frontier_report(points: Sequence[dict], mild: float, strong: float, baselines: Sequence[str] = ("ERM",
                    "deep supervision"), candidate: str = "constrained") -> dict:  # fmt: skip
    """Each ``candidate`` point's verdicts against each baseline method at both noise levels, and the overall verdict:
    does any candidate point lie beyond every baseline's frontier at a given γ? Baselines with no point are left out
    (and listed as ``"missing_baselines"``)."""
    missing = [b for b in baselines if not any(p["method"] == b for p in points)]
    baselines = [b for b in baselines if b not in missing]
    verdicts = []
    for p in (p for p in points if p["method"] == candidate):
        row = {"label": p["label"]}
        for gamma in (mild, strong):
            for base in baselines:
                others = [q for q in points if q["method"] == base]
                row[f"beyond {base} at γ={gamma:g}"] = beyond_frontier(p, others, gamma)
        verdicts.append(row)
    summary = {}
    for gamma in (mild, strong):
        keys = [f"beyond {b} at γ={gamma:g}" for b in baselines]
        winners = [v["label"] for v in verdicts if all(v[k] for k in keys)]
        summary[f"γ={gamma:g}"] = winners
    return {"mild_gamma": mild, "strong_gamma": strong, "points": list(points), "verdicts": verdicts,
            "beyond_every_baseline": summary, "baselines": baselines, "missing_baselines": missing}  # fmt: skip


MARKERS = {"ERM": "o", "deep supervision": "s", "constrained": "^", "pretrained": "x"}


def plot_frontier(report: dict, path: str, metric: str = "token accuracy", title: str | None = None) -> str:
    """Two panels (mild and strong γ): x = accuracy at γ = 0, y = under noise, ± std bars, one marker per method,
    each point labelled with its setting; the report's ``floor`` (if any) as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5))
    raw = bool(report["points"]) and report["points"][0].get("lower_is_better")  # RMSE: as is, not in %
    scale, unit = (1.0, "") if raw else (100.0, " (%)")
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = list(dict.fromkeys(p["method"] for p in report["points"]))
    for ax, gamma in zip(axes, (report["mild_gamma"], report["strong_gamma"])):
        key = f"{gamma:g}"
        for i, method in enumerate(methods):
            pts = [p for p in report["points"] if p["method"] == method]
            ax.errorbar([scale * p["clean"]["mean"] for p in pts], [scale * p[key]["mean"] for p in pts],
                        xerr=[scale * p["clean"]["std"] for p in pts], yerr=[scale * p[key]["std"] for p in pts],
                        fmt=MARKERS.get(method, "D"), color=colors[i % len(colors)], label=method, capsize=3,
                        markersize=7)  # fmt: skip
            for p in pts:
                setting = p["label"][len(method):].strip(" ,") or method
                ax.annotate(setting, (scale * p["clean"]["mean"], scale * p[key]["mean"]), fontsize=7,
                            xytext=(4, 4), textcoords="offset points")  # fmt: skip
        if report.get("floor") is not None:  # what a predictor that never reads its input scores
            ax.axhline(100 * report["floor"], color="gray", linestyle="--", linewidth=1)
            ax.annotate(f"input-free floor {100 * report['floor']:.1f}%", (0.01, 100 * report["floor"]),
                        xycoords=("axes fraction", "data"), fontsize=7, color="gray", xytext=(0, 3),
                        textcoords="offset points")  # fmt: skip
        ax.set_xlabel(f"{metric} at γ = 0{unit}")
        ax.set_ylabel(f"{metric} at γ = {key}{unit}")
        ax.set_title(f"γ = {key}")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)
    return path


def frontier_table(report: dict) -> str:
    """Markdown: one row per point (method and setting), its accuracy at γ = 0 and at the mild and strong γ (mean ±
    std over training seeds, in %), and whether it lies beyond each baseline's frontier (candidate points only)."""
    mild, strong = f"{report['mild_gamma']:g}", f"{report['strong_gamma']:g}"
    verdicts = {v["label"]: v for v in report["verdicts"]}
    baselines = report.get("baselines", [])
    head = ["setting", "seeds", "γ = 0", f"γ = {mild}", f"γ = {strong}"]
    head += [f"beyond {b} (γ = {g})" for g in (mild, strong) for b in baselines]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]

    def cell(value: dict) -> str:
        if report["points"] and report["points"][0].get("lower_is_better"):
            return f"{value['mean']:.4f} ± {value['std']:.4f}"
        return f"{100 * value['mean']:.1f} ± {100 * value['std']:.1f}%"

    for p in sorted(report["points"], key=lambda p: (str(p["method"]), p["label"])):
        row = [p["label"], str(p["num_seeds"]), cell(p["clean"]), cell(p[mild]), cell(p[strong])]
        verdict = verdicts.get(p["label"])
        for g in (mild, strong):
            for b in baselines:
                value = None if verdict is None else verdict.get(f"beyond {b} at γ={g}")
                row.append("" if value is None else "yes" if value else "no")
        lines.append("| " + " | ".join(row) + " |")
    if report.get("floor") is not None:
        lines.append(f"\nInput-free floor (a predictor that never reads its input): {100 * report['floor']:.1f}%.")
    return "\n".join(lines)


def write_frontier(report: dict, path: str) -> str:
    write_json(path, report, indent=2)
    return path
