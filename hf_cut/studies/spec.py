"""The study file: what it may hold, checked before anything runs, and the runs and sweeps it plans.

A study file names a recipe, its YAML, flags common to every run, and stages of runs; each run is a label (the name
tables and the frontier give it: ``"ERM γ=1"``, ``"constrained hard γ=0"``), the flags that make it, and its training
seeds::

    recipe: recipes/unrolled_denoise.py
    config: recipes/unrolled_denoise.yaml
    output_dir: outputs/studies/unrolled          # models and logs (not committed)
    results: studies/unrolled/results             # sweep.json, runs.json, tables and figures (committed)
    flags: {sweep_gammas: [0, 0.5, 1], sweep_seeds: [0, 1, 2]}
    stages:
      - seeds: [0, 1, 2, 3, 4]
        runs:
          - {label: "ERM γ=0", flags: {constrained: false}}
          - {label: "constrained hard γ=0", flags: {resilience_coef: none}}

Optional fields:

- a run's ``folder``: its model folder under ``output_dir``, ``{seed}`` filled in (default ``<label's slug>/s<seed>``);
  it may lead into another study's ``output_dir`` (``../smollm2/erm_s{seed}``) to sweep that study's models again.
- ``models``: models swept as they are, never trained (``{label: pretrained, model: HuggingFaceTB/SmolLM2-135M}``).
- ``sweeps``: how runs are swept when the recipe does not sweep them itself — each an ``hf-cut sweep`` flag line
  (``args``), the results file it merges into (``into``, default ``sweep.json``), the labels of the runs it covers
  (``runs``, default all; ``"label s0"`` names one seed) and the label each gets in it (``labels``, default its
  own). Without ``sweeps`` a run's sweep is the ``ood_sweep.json`` its recipe writes (``--sweep_gammas``).
- ``measure``: ``hf-cut`` command lines run once on the trained models (a second sweep, early exit, AlpacaEval);
  each is done when its ``done`` file (under ``results``) exists, so a committed measurement is never taken again;
  ``stdout`` (under ``results``) keeps what it prints. ``{runs}`` in its command line is every trained run's folder.
- ``reports``: ``hf-cut`` command lines that read the results files only (report, frontier, merge, plot), run every
  time the study is, in order, inside the results folder (their paths are relative to it); ``stdout`` names the file
  their output goes to (listed again: appended), ``heading`` a line written above it. ``{results}`` and
  ``{output_dir}`` in a ``measure`` command line are the study's folders.
- In ``measure`` and ``reports``, ``script`` instead of ``command``: a Python file beside the study file, for what no
  ``hf-cut`` command does (a study's own figures, another kind of shift), run as ``python FILE --results RESULTS``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import yaml

__all__ = ["Run", "SweepSpec", "load_study", "planned_runs", "slug", "sweep_specs"]

FIELDS = ("recipe", "config", "output_dir", "results", "flags", "stages", "models", "sweeps", "measure", "reports")
RUN_FIELDS = ("label", "flags", "folder")
SWEEP_FIELDS = ("args", "into", "runs", "labels")
STEP_FIELDS = ("command", "script", "done", "stdout", "heading")  # of `measure` and `reports` entries


@dataclass(frozen=True)
class Run:
    """One run of a study: its label, seed, flags (the study's, the run's, ``--seed``) and model folder; ``model``
    is set (and ``flags`` empty) for a model swept as it is, not trained."""

    label: str
    seed: int | None
    flags: tuple[str, ...]
    output_dir: str
    model: str | None = None

    @property
    def key(self) -> str:
        return self.label if self.seed is None else f"{self.label} s{self.seed}"

    @property
    def trained(self) -> bool:
        return self.model is not None or os.path.isfile(os.path.join(self.output_dir, "layer_losses.json"))


@dataclass(frozen=True)
class SweepSpec:
    """One ``sweeps`` entry: the ``hf-cut sweep`` flags, the results file, the run labels it covers (None: all) and
    their labels in it."""

    args: str
    into: str
    runs: tuple[str, ...] | None
    labels: dict[str, str]

    @property
    def folder(self) -> str:
        """Where in a run's folder this sweep's output goes: ``sweeps/<into without .json>``."""
        return os.path.join("sweeps", slug(self.into.removesuffix(".json")))

    def covers(self, run: Run) -> bool:
        return self.runs is None or run.label in self.runs or run.key in self.runs


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


def _shape(where: str, value: object, kind: type, what: str) -> None:
    if not isinstance(value, kind):
        raise ValueError(f"{where} must be {what}, got {type(value).__name__} {value!r}.")


def _unknown(where: str, entry: dict, allowed: tuple[str, ...]) -> None:
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise ValueError(f"{where}: unknown field(s) {extra}; allowed: {', '.join(allowed)}.")


def load_study(path: str) -> dict:
    """The study file, checked: ``ValueError`` naming the field for an unknown field, a missing recipe, a run without
    label or seeds, a label used twice, a sweep or report without its command line, a sweep of an unknown label."""
    with open(path, encoding="utf-8") as f:
        try:
            study = yaml.safe_load(f) or {}
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not valid YAML ({' '.join(str(err).split())}).") from None
    _shape(path, study, dict, "a mapping of the fields " + ", ".join(FIELDS))
    _unknown(path, study, FIELDS)
    for name in ("recipe", "output_dir", "results", "stages"):
        if name not in study:
            raise ValueError(f"{path}: the study has no `{name}`.")
    for name in ("recipe", "output_dir", "results"):
        _shape(f"{path}: `{name}`", study[name], str, "a path")
    _shape(f"{path}: `config`", study.get("config") or "", str, "a path (or none: the recipe's own YAML)")
    _shape(f"{path}: `flags`", study.get("flags") or {}, dict, "a mapping of recipe flags to values")
    for name in ("stages", "models", "sweeps", "measure", "reports"):
        _shape(f"{path}: `{name}`", study.get(name) or [], list, "a list of mappings")
        for i, entry in enumerate(study.get(name) or []):
            _shape(f"{path}: {name}[{i}]", entry, dict, "a mapping")
    seen = set()
    for i, stage in enumerate(study["stages"]):
        if not stage.get("seeds") or not stage.get("runs"):
            raise ValueError(f"{path}: stage {i} needs `seeds` and `runs`.")
        seeds, runs = stage["seeds"], stage["runs"]
        if not isinstance(seeds, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in seeds):
            raise ValueError(f"{path}: stage {i}: `seeds` must be a list of integers, got {seeds!r}.")
        _shape(f"{path}: stage {i}: `runs`", runs, list, "a list of mappings")
        for run in runs:
            _shape(f"{path}: stage {i}: a run", run, dict, "a mapping with `label` and `flags`")
            _unknown(f"{path}: stage {i}", run, RUN_FIELDS)
            _shape(f"{path}: stage {i}: `flags` of {run.get('label')!r}", run.get("flags") or {}, dict,
                   "a mapping of recipe flags to values")  # fmt: skip
            _shape(f"{path}: stage {i}: `folder` of {run.get('label')!r}", run.get("folder", ""), str,
                   "a folder under output_dir ({seed} is filled in)")  # fmt: skip
            if not run.get("label") or not isinstance(run["label"], str):
                raise ValueError(f"{path}: a run of stage {i} has no `label` (a name, in quotes where YAML needs).")
            if run["label"] in seen:
                raise ValueError(f"{path}: the label {run['label']!r} is used twice.")
            seen.add(run["label"])
    for entry in study.get("models") or []:
        if not entry.get("label") or not entry.get("model") or entry["label"] in seen:
            raise ValueError(f"{path}: each of `models` needs a `label` (not a run's) and a `model`.")
        seen.add(entry["label"])
    for i, entry in enumerate(study.get("sweeps") or []):
        _unknown(f"{path}: sweeps[{i}]", entry, SWEEP_FIELDS)
        for name, kind, what in (("args", str, "the hf-cut sweep flags, one string"), ("into", str, "a file name"),
                                 ("runs", list, "a list of labels"), ("labels", dict, "a mapping of label to label")):
            if entry.get(name) is not None:
                _shape(f"{path}: sweeps[{i}].{name}", entry[name], kind, what)
        if not entry.get("args"):
            raise ValueError(f"{path}: sweeps[{i}] has no `args` (the hf-cut sweep flags).")
        for label in [*(entry.get("runs") or []), *(entry.get("labels") or {})]:
            if label not in seen and re.sub(r" s\d+$", "", label) not in seen:
                raise ValueError(f"{path}: sweeps[{i}] names {label!r}, which is no run or model of the study.")
    for name in ("measure", "reports"):
        for i, entry in enumerate(study.get(name) or []):
            _unknown(f"{path}: {name}[{i}]", entry, STEP_FIELDS)
            for field in STEP_FIELDS:
                if entry.get(field) is not None:
                    _shape(f"{path}: {name}[{i}].{field}", entry[field], str, "a string")
            if bool(entry.get("command")) == bool(entry.get("script")) or (
                name == "measure" and not (entry.get("done") or entry.get("stdout"))
            ):
                raise ValueError(f"{path}: {name}[{i}] needs one of `command` and `script`"
                                 + (", and `done`." if name == "measure" else "."))  # fmt: skip
            if entry.get("script") and not os.path.isfile(os.path.join(os.path.dirname(path), entry["script"])):
                raise ValueError(f"{path}: {name}[{i}]: the script {entry['script']!r} is not beside the study file.")
    study["_folder"] = os.path.dirname(path)
    return study


def planned_runs(study: dict) -> Iterator[Run]:
    """Every run of the study, in the order they are trained; then the models swept as they are."""
    common = _as_flags(study.get("flags") or {})
    config = ["--config", study["config"]] if study.get("config") else []
    for stage in study["stages"]:
        for seed in stage["seeds"]:
            for run in stage["runs"]:
                folder = run.get("folder", os.path.join(slug(run["label"]), "s{seed}")).format(seed=seed)
                folder = os.path.normpath(os.path.join(study["output_dir"], folder))
                flags = (*config, *common, *_as_flags(run.get("flags") or {}), "--seed", str(seed),
                         "--output_dir", folder)  # fmt: skip
                yield Run(run["label"], seed, flags, folder)
    for entry in study.get("models") or []:
        yield Run(entry["label"], None, (), os.path.join(study["output_dir"], slug(entry["label"])), entry["model"])


def sweep_specs(study: dict) -> list[SweepSpec]:
    """The study's ``sweeps`` entries (none: the recipe sweeps each run itself)."""
    return [SweepSpec(e["args"], e.get("into", "sweep.json"), tuple(e["runs"]) if e.get("runs") else None,
                      dict(e.get("labels") or {})) for e in study.get("sweeps") or []]  # fmt: skip
