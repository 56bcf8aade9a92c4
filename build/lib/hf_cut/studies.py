"""A study as data: one YAML file of runs, trained where missing, their γ sweeps merged into one results file.

A study file names a recipe, its YAML, flags common to every run, and stages of runs; each run is a label (the name
tables and the frontier give it: ``"ERM γ=1"``, ``"constrained hard γ=0"``), the flags that make it, and its training
seeds::

    recipe: recipes/unrolled_denoise.py
    config: recipes/unrolled_denoise.yaml
    output_dir: outputs/studies/unrolled          # models and logs (not committed)
    results: studies/unrolled/results             # sweep.json and runs.json (committed)
    flags: {sweep_gammas: [0, 0.5, 1], sweep_seeds: [0, 1, 2]}
    stages:
      - seeds: [0, 1, 2, 3, 4]
        runs:
          - {label: "ERM γ=0", flags: {constrained: false}}
          - {label: "constrained hard γ=0", flags: {resilience_coef: none}}

Stages run in order, and inside a stage seed by seed (every run's seed 0 before any seed 1), so a study stopped early
holds the same seeds for every setting. A run is trained when its model folder has no ``ood_sweep.json``; the file is
read again after every run, so runs can be added while it goes; a run that fails is reported and the others go on.
Several workers can share a study: each claims a run before training it (a ``.claim`` folder in the run's folder;
remove the claims of an interrupted study before starting it again).
After each run its sweep records, relabelled with the run's label and its model folder as ``path`` (one training
seed), are merged into ``results/sweep.json`` (:func:`hf_cut.evaluation.report.merge_sweeps`), and its summary
(runtime, dual variables, held-out layer losses) into ``results/runs.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

__all__ = ["Run", "load_study", "main", "planned_runs", "run_study"]

SUMMARY_KEYS = (
    "train_runtime", "global_step", "num_layers", "dual_variables", "layer_losses", "rmse", "eval_loss",
    "eval_mean_token_accuracy", "constraint_satisfaction", "descent_ratio_mean", "example_satisfaction",
)  # fmt: skip


@dataclass(frozen=True)
class Run:
    """One training run of a study: its label, seed, flags (the study's, the run's, ``--seed``) and model folder."""

    label: str
    seed: int
    flags: tuple[str, ...]
    output_dir: str

    @property
    def key(self) -> str:
        return f"{self.label} s{self.seed}"


def slug(label: str) -> str:
    """A folder name for a label: ``"ERM γ=0.5"`` → ``"erm_g0.5"``."""
    text = label.lower().replace("γ", "g").replace("α", "a").replace("λ", "l").replace("β", "b")
    return re.sub(r"[^a-z0-9.]+", "_", text.replace("=", "")).strip("_")


def _as_flags(values: dict) -> list[str]:
    flags = []
    for name, value in values.items():
        items = value if isinstance(value, list) else [value]
        flags += [f"--{name}", *("none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)
                                 for v in items)]  # fmt: skip
    return flags


def load_study(path: str) -> dict:
    """The study file, checked: ``ValueError`` naming the field for a missing recipe, a run without label or seeds,
    or a label used twice."""
    with open(path, encoding="utf-8") as f:
        study = yaml.safe_load(f) or {}
    for name in ("recipe", "output_dir", "results", "stages"):
        if name not in study:
            raise ValueError(f"{path}: the study has no `{name}`.")
    seen = set()
    for i, stage in enumerate(study["stages"]):
        if not stage.get("seeds") or not stage.get("runs"):
            raise ValueError(f"{path}: stage {i} needs `seeds` and `runs`.")
        for run in stage["runs"]:
            label = run.get("label")
            if not label:
                raise ValueError(f"{path}: a run of stage {i} has no `label`.")
            if label in seen:
                raise ValueError(f"{path}: the label {label!r} is used twice.")
            seen.add(label)
    return study


def planned_runs(study: dict) -> Iterator[Run]:
    """Every run of the study, in the order they are trained."""
    common = _as_flags(study.get("flags") or {})
    config = ["--config", study["config"]] if study.get("config") else []
    for stage in study["stages"]:
        for seed in stage["seeds"]:
            for run in stage["runs"]:
                folder = os.path.join(study["output_dir"], slug(run["label"]), f"s{seed}")
                flags = (*config, *common, *_as_flags(run.get("flags") or {}), "--seed", str(seed),
                         "--output_dir", folder)  # fmt: skip
                yield Run(run["label"], seed, flags, folder)


def _collect(run: Run, results: str) -> None:
    """Merge the run's sweep (relabelled, its folder as ``path``) and summary into the study's results files."""
    from .evaluation.report import load_sweep
    from .evaluation.sweep import SCALAR_METRICS, aggregate_records

    os.makedirs(results, exist_ok=True)
    sweep_path = os.path.join(results, "sweep.json")
    kept = [r for r in load_sweep(sweep_path).records if r.get("path") != run.output_dir] \
        if os.path.isfile(sweep_path) else []  # fmt: skip
    records = kept + [{**r, "model": run.label, "path": run.output_dir} for r in load_sweep(run.output_dir).records]
    aggregates = aggregate_records(records, metrics=(*SCALAR_METRICS, "rmse", "accuracy"))
    with open(sweep_path, "w", encoding="utf-8") as f:
        json.dump({"config": {"study": "see the study file"}, "records": records, "aggregates": aggregates}, f)
    runs_path = os.path.join(results, "runs.json")
    runs = json.load(open(runs_path, encoding="utf-8")) if os.path.isfile(runs_path) else {}
    with open(os.path.join(run.output_dir, "layer_losses.json"), encoding="utf-8") as f:
        summary = json.load(f)
    runs[run.key] = {"label": run.label, "seed": run.seed, "path": run.output_dir,
                     **{k: summary[k] for k in SUMMARY_KEYS if k in summary}}  # fmt: skip
    with open(runs_path, "w", encoding="utf-8") as f:
        json.dump(dict(sorted(runs.items())), f, indent=1)


def _claim(run: Run) -> bool:
    """Take ``run`` for this worker: its folder made, then ``.claim`` inside it created atomically; another worker of
    the same study that finds the claim goes on to the next run (start several to use several cores)."""
    os.makedirs(run.output_dir, exist_ok=True)
    try:
        os.mkdir(os.path.join(run.output_dir, ".claim"))
        return True
    except FileExistsError:
        return False


def run_study(path: str, dry_run: bool = False, collect_only: bool = False) -> list[str]:
    """Train the study's missing runs one after another, collecting each; returns the keys of the runs that failed."""
    failed: list[str] = []
    while True:
        study = load_study(path)
        pending = [r for r in planned_runs(study) if r.key not in failed
                   and not os.path.isfile(os.path.join(r.output_dir, "ood_sweep.json"))]  # fmt: skip
        if dry_run or collect_only or not pending:
            break
        run = next((r for r in pending if _claim(r)), None)
        if run is None:  # every pending run is another worker's
            break
        command = [sys.executable, study["recipe"], *run.flags]
        print(f"[{time.strftime('%H:%M:%S')}] {run.key}: {' '.join(command)}", flush=True)
        with open(os.path.join(run.output_dir, "train.log"), "w", encoding="utf-8") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT)
        if code != 0:
            print(f"[{time.strftime('%H:%M:%S')}] {run.key} FAILED ({code}): {run.output_dir}/train.log", flush=True)
            failed.append(run.key)
            continue
        _collect(run, study["results"])
    if dry_run:
        for run in pending:
            print(f"{run.key}: {study['recipe']} {' '.join(run.flags)}")
    if collect_only:
        for run in planned_runs(study):
            if os.path.isfile(os.path.join(run.output_dir, "ood_sweep.json")):
                _collect(run, study["results"])
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study file (YAML)")
    parser.add_argument("--dry_run", action="store_true", help="list the runs still to train, train nothing")
    parser.add_argument("--collect_only", action="store_true", help="merge the trained runs' results, train nothing")
    args = parser.parse_args(argv)
    failed = run_study(args.study, dry_run=args.dry_run, collect_only=args.collect_only)
    if failed:
        print(f"{len(failed)} run(s) failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
