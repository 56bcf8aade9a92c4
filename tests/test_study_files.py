"""Every committed study file: valid, its recipe and YAML present, and its reports, run again on a copy of its
committed results, rewrite every table and figure they declare (their `stdout` files, the outputs their command lines
name, a script's documented files) — no more, no fewer — byte for byte as committed (the numbers of a page regenerate
from its study file with every run and measurement cached)."""

from __future__ import annotations

import filecmp
import glob
import os
import shutil

import pytest

from hf_cut.studies import load_study, planned_runs, run_study, sweep_specs
from tests.conftest import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDIES = sorted(glob.glob(os.path.join(ROOT, "studies", "*", "study.yaml")))


def test_every_study_folder_has_a_study_file():
    folders = {d for d in os.listdir(os.path.join(ROOT, "studies")) if os.path.isdir(os.path.join(ROOT, "studies", d))}
    assert folders == {os.path.basename(os.path.dirname(p)) for p in STUDIES}
    assert {"smollm2", "smollm2_noise", "imdb", "builtin_demo", "unrolled", "text_from_scratch"} <= folders


@pytest.mark.parametrize("path", STUDIES, ids=lambda p: os.path.basename(os.path.dirname(p)))
def test_study_file(path, tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    study = load_study(path)
    assert os.path.isfile(study["recipe"]) and (not study.get("config") or os.path.isfile(study["config"]))
    assert study["results"] == os.path.relpath(os.path.join(os.path.dirname(path), "results"), ROOT)
    assert os.path.isfile(os.path.join(os.path.dirname(path), "README.md"))
    runs = list(planned_runs(study))
    assert len({r.output_dir for r in runs}) == len(runs), "two runs share a folder"
    check_flags(study, runs)
    if not study.get("reports"):
        return
    copy = tmp_path / "results"
    shutil.copytree(study["results"], copy)
    for name in glob.glob(str(copy / "**" / "*"), recursive=True):
        os.utime(name, (0, 0))
    assert run_study(path, reports_only=True, results=str(copy)) == []
    files = glob.glob(str(copy / "**" / "*"), recursive=True)
    written = {p for p in files if os.path.isfile(p) and os.stat(p).st_mtime > 0}
    declared = {os.path.normpath(os.path.join(copy, name)) for name in declared_outputs(study, path)}
    # every output the study's reports declare is written again (a report that stops writing one fails here), and
    # nothing else is
    assert declared, "a study with reports declares outputs"
    named = lambda paths: sorted(os.path.relpath(p, copy) for p in paths)  # noqa: E731
    assert not declared - written, f"declared, not written: {named(declared - written)}"
    assert not written - declared, f"written, not declared: {named(written - declared)}"
    for name in written:
        committed = os.path.join(study["results"], os.path.relpath(name, copy))
        assert os.path.isfile(committed), f"a report writes {committed}, which is not committed"
        assert filecmp.cmp(name, committed, shallow=False), f"{committed} differs when its study's reports run again"


# what a report command writes, by its flags: the files each command's documentation names (hf_cut/cli/*.py)
def _command_outputs(argv: list[str]) -> list[str]:
    import importlib

    from hf_cut.cli import COMMANDS

    name, rest = argv[0], argv[1:]
    args = importlib.import_module(f"hf_cut.{COMMANDS[name][0]}").make_parser().parse_args(rest)
    if name == "report":  # the table on stdout; --figures DIR: the sweep's two figures
        figures = ("metric_vs_gamma.png", "loss_vs_layer.png")
        return [os.path.join(args.figures, f) for f in figures] if args.figures else []
    if name == "frontier":
        return [os.path.join(args.output_dir, f"frontier.{ext}") for ext in ("json", "md", "png")]
    if name == "merge":
        return [os.path.join(args.output_dir, f) for f in ("ood_sweep.json", "ood_sweep.csv", "metric_vs_gamma.png",
                                                           "loss_vs_layer.png")]  # fmt: skip
    if name in ("plot", "generation-report"):
        return [args.output] if args.output else []
    raise AssertionError(f"report command {name!r}: say here which files it writes")


# a study's own report script: the files its docstring names
SCRIPT_OUTPUTS = {
    "unrolled/report.py": ["tables.md", "frontier.json", "frontier.png", "edge_vs_depth.png", "rmse_vs_gamma.png",
                           "layer_losses.png"],
}  # fmt: skip


def declared_outputs(study: dict, path: str) -> set[str]:
    """The files (relative to the results folder) that the study's `reports` declare: each entry's `stdout`, the
    outputs its command line names (`--figures`, `--output_dir`, `--output`), a script's documented files."""
    import shlex

    out = set()
    for entry in study["reports"]:
        if entry.get("stdout"):
            out.add(entry["stdout"])
        if entry.get("command"):
            out.update(_command_outputs(shlex.split(entry["command"])))
        else:
            script = os.path.join(os.path.dirname(path), entry["script"])
            script = os.path.relpath(script, os.path.join(ROOT, "studies"))
            out.update(SCRIPT_OUTPUTS[script.replace(os.sep, "/")])
    return {os.path.normpath(name) for name in out}


def test_declared_outputs_by_hand():
    """The outputs read off a study's report lines, against a hand-written list."""
    study = {"reports": [{"command": "report ood_sweep.json --figures .", "stdout": "table.md"},
                         {"command": "report x/ood_sweep.json --by_training_seed", "stdout": "x/table.md"},
                         {"command": "frontier ood_sweep.json --output_dir f --floor floor.json"},
                         {"command": "merge a.json b.json --output_dir m --keep ERM"},
                         {"command": "plot --sweep ood_sweep.json --output layers.png"},
                         {"command": "generation-report generation --output generation.json", "stdout": "generation.md"},
                         {"script": "report.py"}]}  # fmt: skip
    assert declared_outputs(study, os.path.join(ROOT, "studies", "unrolled", "study.yaml")) == {
        "table.md", "metric_vs_gamma.png", "loss_vs_layer.png", "x/table.md", "f/frontier.json", "f/frontier.md",
        "f/frontier.png", "m/ood_sweep.json", "m/ood_sweep.csv", "m/metric_vs_gamma.png", "m/loss_vs_layer.png",
        "layers.png", "generation.json", "generation.md", "tables.md", "frontier.json", "frontier.png",
        "edge_vs_depth.png", "rmse_vs_gamma.png", "layer_losses.png",
    }  # fmt: skip


def check_flags(study: dict, runs) -> None:
    """Every run's flags parse with its recipe's own parser (a misspelt option fails here, not hours into a study),
    and every sweep's flags with the sweep's."""
    import shlex

    from hf_cut.cli import sweep as sweep_cli

    parser = load_script(study["recipe"]).make_parser()
    for run in runs:
        if run.model is None:
            parser.parse_args_and_config(list(run.flags))
    for spec in sweep_specs(study):
        sweep_cli.make_parser().parse_args(["--model", "m", "--output_dir", "o", *shlex.split(spec.args)])


def test_the_readme_example_study(tmp_path, monkeypatch):
    """The study file of studies/README.md (ERM, noise and the constraint on one's own model) is valid and its runs
    parse with the recipe."""
    import re

    monkeypatch.chdir(ROOT)
    text = open(os.path.join(ROOT, "studies", "README.md"), encoding="utf-8").read()
    example = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    path = tmp_path / "study.yaml"
    path.write_text(example)
    study = load_study(str(path))
    runs = list(planned_runs(study))
    assert [r.key for r in runs][:4] == ["ERM γ=0 s0", "ERM γ=1 s0", "constrained γ=0 s0", "constrained γ=1 s0"]
    check_flags(study, runs)
