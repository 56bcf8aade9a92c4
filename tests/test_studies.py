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
    # a second call trains only the failed run again (claims are released when a run ends) and keeps the results
    assert run_study(path) == ["bad s0"] and json.loads((tmp_path / "res" / "sweep.json").read_text()) == sweep
    assert not any((tmp_path / "out").rglob(".claim"))


def test_bad_study_files(tmp_path):
    with pytest.raises(ValueError, match="twice"):
        load_study(write_study(tmp_path, "  - seeds: [0]\n    runs:\n      - {label: a}\n      - {label: a}\n"))
    with pytest.raises(ValueError, match="seeds"):
        load_study(write_study(tmp_path, "  - runs:\n      - {label: a}\n"))


def test_sweeps_measure_and_reports(tmp_path, capsys):
    """A run swept by two `sweeps` entries (its folders already hold their output: collected, relabelled, each into
    its own file), a model given as it is, a measurement skipped once its file exists, and reports whose output is
    written, appended under headings, inside the results folder."""
    out, res = tmp_path / "out", tmp_path / "res"
    for folder, sub, values in [("erm_s0", "ood_sweep", (0.5, 0.4)), ("erm_s0", "extra", (0.7, 0.6)),
                                ("cut_s0", "ood_sweep", (0.6, 0.5)), ("base", "ood_sweep", (0.3, 0.1))]:  # fmt: skip
        sweep_dir = out / folder / "sweeps" / sub
        sweep_dir.mkdir(parents=True)
        records = [{"model": "x", "gamma": g, "seed": 0, "loss": 1.0, "token_accuracy": v, "layer_losses": [2.0, 1.0]}
                   for g, v in zip((0.0, 1.0), values)]  # fmt: skip
        (sweep_dir / "ood_sweep.json").write_text(json.dumps({"records": records, "aggregates": []}))
    (out / "erm_s0" / "layer_losses.json").write_text(json.dumps({"num_layers": 1, "train_runtime": 2.0}))
    (out / "cut_s0" / "layer_losses.json").write_text(json.dumps({"num_layers": 1, "train_runtime": 3.0}))
    (res / "done.json").parent.mkdir(parents=True)
    (res / "done.json").write_text("{}")
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""
        recipe: none.py
        output_dir: {out}
        results: {res}
        stages:
          - seeds: [0]
            runs:
              - {{label: ERM, folder: "erm_s{{seed}}"}}
              - {{label: constrained, folder: "cut_s{{seed}}"}}
        models:
          - {{label: base, model: {out / "base"}}}
        sweeps:
          - {{into: ood_sweep.json, args: "--gammas 0 1"}}
          - {{into: extra.json, runs: [ERM s0], labels: {{ERM: ERM again}}, args: "--gammas 0 1"}}
        measure:
          - {{done: done.json, command: "no-such-subcommand"}}
        reports:
          - {{command: "report ood_sweep.json --by_training_seed", stdout: table.md, heading: "## all"}}
          - {{command: "report extra.json --by_training_seed", stdout: table.md, heading: "## extra"}}
    """))
    study = load_study(str(path))
    assert [(r.key, r.model) for r in planned_runs(study)] == [("ERM s0", None), ("constrained s0", None),
                                                                ("base", str(out / "base"))]  # fmt: skip
    assert run_study(str(path), dry_run=True) == [] and "sweep only" not in capsys.readouterr().out  # all done
    assert run_study(str(path), collect_only=True) == []
    main = json.loads((res / "ood_sweep.json").read_text())["records"]
    assert {(r["model"], r["gamma"]): r["token_accuracy"] for r in main} == {
        ("ERM", 0.0): 0.5, ("ERM", 1.0): 0.4, ("constrained", 0.0): 0.6, ("constrained", 1.0): 0.5,
        ("base", 0.0): 0.3, ("base", 1.0): 0.1}  # fmt: skip
    extra = json.loads((res / "extra.json").read_text())["records"]
    assert {(r["model"], r["path"]) for r in extra} == {("ERM again", str(out / "erm_s0"))}
    assert sorted(json.loads((res / "runs.json").read_text())) == ["ERM s0", "constrained s0"]
    table = (res / "table.md").read_text()
    assert table.startswith("## all\n\n") and "\n## extra\n\n" in table
    # one column per label in the order collected, one row per γ, in points: ERM 40, constrained 50, base 10 at γ = 1
    table = table.replace(" ± 0.0%", "")
    assert "| 1 | 40.0 | 50.0 | 10.0 |" in table and "| 1 | 60.0 |" in table.split("## extra")[1]
    # the measurement is not taken again (its file exists): the bad subcommand never runs
    assert run_study(str(path)) == []


def test_bad_sweeps_and_reports(tmp_path):
    base = "  - seeds: [0]\n    runs:\n      - {label: a}\n"
    with pytest.raises(ValueError, match="no run or model"):
        load_study(write_study(tmp_path, base + "sweeps:\n  - {args: '--gammas 0', runs: [b]}\n"))
    with pytest.raises(ValueError, match="args"):
        load_study(write_study(tmp_path, base + "sweeps:\n  - {runs: [a]}\n"))
    with pytest.raises(ValueError, match="unknown field"):
        load_study(write_study(tmp_path, base + "reprots: []\n"))
    with pytest.raises(ValueError, match="measure\\[0\\] needs one of `command` and `script`, and `done`"):
        load_study(write_study(tmp_path, base + "measure:\n  - {command: floor}\n"))
    with pytest.raises(ValueError, match="not beside the study file"):
        load_study(write_study(tmp_path, base + "reports:\n  - {script: nowhere.py}\n"))


def test_runner_sweeps_real_models_as_one_joint_sweep_would(tmp_path):
    """End to end with the `sweeps` field: a stand-in recipe "trains" by copying a saved tiny Llama (one per seed), the
    runner sweeps each run with `hf-cut sweep` in its own process and merges; every record equals the same
    measurement of a sweep of both models at once (what the earlier studies ran), so per-run sweeps reproduce them."""
    from hf_cut.cli import main as hf_cut
    from tests.recipe_assets import write_tiny_llama

    models = [write_tiny_llama(tmp_path / f"tiny{s}", num_layers=2, hidden_size=32, seed=s) for s in (0, 1)]
    recipe = tmp_path / "copy_recipe.py"
    recipe.write_text(textwrap.dedent(f'''
        import json, shutil, sys
        args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
        shutil.copytree({str(tmp_path)!r} + "/tiny" + args["--seed"], args["--output_dir"], dirs_exist_ok=True)
        json.dump({{"num_layers": 2}}, open(args["--output_dir"] + "/layer_losses.json", "w"))
    '''))
    path = tmp_path / "study.yaml"
    path.write_text(textwrap.dedent(f"""
        recipe: {recipe}
        output_dir: {tmp_path / "out"}
        results: {tmp_path / "res"}
        stages:
          - seeds: [0, 1]
            runs:
              - {{label: ERM}}
        sweeps:
          - {{args: "--gammas 0 1 --seeds 0 --limit 6 --batch_size 4"}}
    """))
    assert run_study(str(path)) == []
    collected = json.loads((tmp_path / "res" / "sweep.json").read_text())["records"]
    hf_cut(["sweep", "--model", *map(str, models), "--labels", "ERM", "ERM", "--gammas", "0", "1", "--seeds", "0",
            "--limit", "6", "--batch_size", "4", "--output_dir", str(tmp_path / "joint")])  # fmt: skip
    joint = json.loads((tmp_path / "joint" / "ood_sweep.json").read_text())["records"]
    assert len(collected) == len(joint) == 4
    for record in collected:
        seed = record["path"][-1]
        twin = next(r for r in joint if r["path"] == str(tmp_path / f"tiny{seed}") and r["gamma"] == record["gamma"])
        assert record["model"] == "ERM" and record["path"] == str(tmp_path / "out" / "erm" / f"s{seed}")
        assert record["layer_losses"] == pytest.approx(twin["layer_losses"], rel=1e-6)
        assert record["token_accuracy"] == twin["token_accuracy"]
