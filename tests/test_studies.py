"""hf_cut.studies: a study file's runs in order, trained where missing, a failed run reported while the others go on,
and every run's sweep merged into the study's results under its label (checked by hand on a stand-in recipe)."""

from __future__ import annotations

import json
import textwrap

import pytest

from hf_cut.studies import load_study, planned_runs, run_study, slug

# a stand-in recipe: writes the sweep a recipe writes, its RMSE a function of --seed and --knob; fails on --knob 13
RECIPE = textwrap.dedent('''
    import json, os, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    out, seed, knob = args["--output_dir"], int(args["--seed"]), float(args["--knob"])
    if knob == 13:
        sys.exit("unlucky")
    os.makedirs(out, exist_ok=True)
    records = [{"model": "constrained", "gamma": g, "seed": 0, "rmse": knob + seed / 10 + g,
                "loss": 1.0, "layer_losses": [2.0, 1.0]} for g in (0.0, 1.0)]
    json.dump({"records": records, "aggregates": []}, open(os.path.join(out, "ood_sweep.json"), "w"))
    json.dump({"num_layers": 1, "train_runtime": 0.5, "dual_variables": [knob]}, open(os.path.join(out, "layer_losses.json"), "w"))
''')


def write_study(tmp_path, runs: str) -> str:
    (tmp_path / "recipe.py").write_text(RECIPE)
    path = tmp_path / "study.yaml"
    path.write_text(f"recipe: {tmp_path / 'recipe.py'}\noutput_dir: {tmp_path / 'out'}\nresults: {tmp_path / 'res'}\n"
                    f"flags: {{extra: 1}}\nstages:\n{runs}")  # fmt: skip
    return str(path)


STAGES = """  - seeds: [0, 1]
    runs:
      - {label: "ERM γ=0", flags: {knob: 1}}
      - {label: "constrained hard γ=0", flags: {knob: 2}}
  - seeds: [0]
    runs:
      - {label: "bad", flags: {knob: 13}}
"""


def test_order_flags_and_folders(tmp_path):
    study = load_study(write_study(tmp_path, STAGES))
    runs = list(planned_runs(study))
    assert [r.key for r in runs] == ["ERM γ=0 s0", "constrained hard γ=0 s0", "ERM γ=0 s1", "constrained hard γ=0 s1",
                                     "bad s0"]  # fmt: skip
    assert runs[0].flags == ("--extra", "1", "--knob", "1", "--seed", "0", "--output_dir", str(tmp_path / "out" /
                                                                                              "erm_g0" / "s0"))  # fmt: skip
    assert slug("deep supervision w=0.1 γ=0.5") == "deep_supervision_w0.1_g0.5"


def test_trains_missing_runs_collects_and_reports_failures(tmp_path, capsys):
    path = write_study(tmp_path, STAGES)
    assert run_study(path) == ["bad s0"]
    sweep = json.loads((tmp_path / "res" / "sweep.json").read_text())
    rmse = {(r["model"], r["path"].split("/")[-1], r["gamma"]): r["rmse"] for r in sweep["records"]}
    assert rmse == {("ERM γ=0", "s0", 0.0): 1.0, ("ERM γ=0", "s0", 1.0): 2.0, ("ERM γ=0", "s1", 0.0): 1.1,
                    ("ERM γ=0", "s1", 1.0): 2.1, ("constrained hard γ=0", "s0", 0.0): 2.0,
                    ("constrained hard γ=0", "s0", 1.0): 3.0, ("constrained hard γ=0", "s1", 0.0): 2.1,
                    ("constrained hard γ=0", "s1", 1.0): 3.1}  # fmt: skip
    means = {(a["model"], a["gamma"]): a["rmse_mean"] for a in sweep["aggregates"]}
    assert means[("ERM γ=0", 1.0)] == pytest.approx(2.05)
    runs = json.loads((tmp_path / "res" / "runs.json").read_text())
    assert sorted(runs) == ["ERM γ=0 s0", "ERM γ=0 s1", "constrained hard γ=0 s0", "constrained hard γ=0 s1"]
    assert runs["constrained hard γ=0 s1"]["dual_variables"] == [2.0]
    assert "bad s0 FAILED" in capsys.readouterr().out
    # a second call trains nothing new (the claims and sweeps are there) and keeps the results
    assert run_study(path) == [] and json.loads((tmp_path / "res" / "sweep.json").read_text()) == sweep


def test_bad_study_files(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        load_study(write_study(tmp_path, "  - seeds: [0]\n    runs:\n      - {label: a}\n      - {label: a}\n"))
    with pytest.raises(ValueError, match="seeds"):
        load_study(write_study(tmp_path, "  - runs:\n      - {label: a}\n"))
