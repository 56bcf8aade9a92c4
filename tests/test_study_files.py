"""Every committed study file: valid, its recipe and YAML present, and its reports, run again on a copy of its
committed results, rewrite the committed tables and figures byte for byte (the numbers of a page regenerate from its
study file with every run and measurement cached)."""

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
    written = [p for p in files if os.path.isfile(p) and os.stat(p).st_mtime > 0]
    for entry in study["reports"]:
        if entry.get("stdout"):
            assert str(copy / entry["stdout"]) in written, entry
    assert written
    for name in written:
        committed = os.path.join(study["results"], os.path.relpath(name, copy))
        assert os.path.isfile(committed), f"a report writes {committed}, which is not committed"
        assert filecmp.cmp(name, committed, shallow=False), f"{committed} differs when its study's reports run again"


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
