"""Pooling AlpacaEval-style sweeps over training seeds: win rate, exact match and token F1, mean ± std per comparison
and γ.

Each run directory holds the ``alpaca_eval.json`` written by :func:`hf_cut.evaluation.generation.alpaca.alpaca_eval_sweep` for
one (model, reference) pair; directories named ``<comparison>_s<seed>`` (e.g. ``cut_vs_erm_s0``) are pooled by
``<comparison>``.
"""

from __future__ import annotations

import json
import os
import re
import statistics
from collections.abc import Sequence

__all__ = ["summarise_generation", "generation_table"]

FIELDS = ("win_rate", "exact_match", "reference_exact_match", "token_f1", "reference_token_f1")


def _mean_std(values: Sequence[float]) -> dict[str, float]:
    return {"mean": statistics.fmean(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0}


def summarise_generation(root: str) -> dict:
    """``{comparison: {"runs": [...], "results": [{"gamma", "num_seeds", "win_rate": {"mean", "std"}, ...}]}}`` from
    every ``root/<comparison>_s<seed>/alpaca_eval.json``."""
    groups: dict[str, list[dict]] = {}
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name, "alpaca_eval.json")
        if not os.path.isfile(path):
            continue
        comparison = re.sub(r"_s\d+$", "", name)
        with open(path, encoding="utf-8") as f:
            groups.setdefault(comparison, []).append({"dir": name, **json.load(f)})
    if not groups:
        raise ValueError(f"no <comparison>_s<seed>/alpaca_eval.json under {root!r}")
    summary = {}
    for comparison, runs in groups.items():
        by_gamma: dict[float, list[dict]] = {}
        for run in runs:
            for row in run["results"]:
                by_gamma.setdefault(row["gamma"], []).append(row)
        results = []
        for gamma, rows in sorted(by_gamma.items()):
            entry: dict = {"gamma": gamma, "num_seeds": len(rows)}
            for field in FIELDS:
                values = [r[field] for r in rows if r.get(field) is not None]
                if len(values) == len(rows):
                    entry[field] = _mean_std(values)
            results.append(entry)
        summary[comparison] = {
            "runs": [{"dir": r["dir"], "model": r["model"], "reference": r["reference"]} for r in runs],
            "annotator": runs[0].get("annotator"),
            "num_instructions": runs[0].get("num_instructions"),
            "results": results,
        }
    return summary


def generation_table(summary: dict) -> str:
    """Markdown: one row per comparison and γ — win rate against the reference, both exact-match rates and both mean
    token F1 (mean ± std over training seeds, in %; empty where a sweep did not record them)."""
    lines = ["| comparison | γ | seeds | win rate | exact match (model) | exact match (reference) | token F1 (model) | "
             "token F1 (reference) |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for comparison, block in summary.items():
        for row in block["results"]:
            cells = [f"{row[f]['mean']:.1f} ± {row[f]['std']:.1f}%" if f in row else "" for f in FIELDS]
            lines.append(f"| {comparison} | {row['gamma']:g} | {row['num_seeds']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
