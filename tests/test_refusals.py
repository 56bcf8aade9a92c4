"""Bad input at every entry point — each `hf-cut` subcommand, the eval scripts, the recipes, a study file — is refused
in one line on stderr that names the argument and what is allowed, with exit status 2 and no traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hf_cut.cli import COMMANDS, main

ROOT = Path(__file__).resolve().parents[1]


def refusal(argv: list[str], capsys) -> str:
    """Run `hf-cut ARGV` in this process: it must exit with status 2, print nothing on stdout and one line on stderr
    starting with `hf-cut <subcommand>: error:`; returns that line."""
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    out, err = capsys.readouterr()
    assert code == 2, (code, out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"hf-cut {argv[0]}: error: "), lines[0]
    assert out == ""
    return lines[0]


@pytest.fixture
def not_a_model(tmp_path) -> str:
    """A folder that exists but holds no model (no config.json)."""
    (tmp_path / "empty").mkdir()
    return str(tmp_path / "empty")


@pytest.fixture
def malformed_sweep(tmp_path) -> str:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ood_sweep.json").write_text('{"records": [')
    return str(tmp_path / "bad")


# subcommand -> [(argv after the subcommand, what the line must say)]; {tmp}, {empty}, {bad} are filled in below
CASES: dict[str, list[tuple[list[str], str]]] = {
    "sweep": [
        (["--model", "/nope", "--output_dir", "{tmp}/o"], "--model: '/nope' does not exist"),
        (["--model", "{empty}", "--output_dir", "{tmp}/o"], "--model: '{empty}' holds no model (no config.json or"),
        (["--task", "bogus", "--model", "{empty}", "--output_dir", "{tmp}/o"],
         "argument --task: invalid choice: 'bogus' (choose from 'causal_lm', 'classification', 'denoising')"),
        (["--model", "{empty}"], "the following arguments are required: --output_dir"),
    ],
    "study": [
        (["missing.yaml"], "argument study: no such file 'missing.yaml'"),
        (["{tmp}/list.yaml"], "must be a mapping of the fields recipe"),
        (["{tmp}/broken.yaml"], "not valid YAML"),
        (["{tmp}/stages.yaml"], "`stages` must be a list of mappings, got int 3"),
        (["{tmp}/run.yaml"], "stage 0: a run must be a mapping with `label` and `flags`, got str 'erm'"),
        (["{tmp}/seeds.yaml"], "stage 0: `seeds` must be a list of integers, got 'zero'"),
        (["{tmp}/folder.yaml"], "stage 0: `folder` of 'a' must be a folder under output_dir ({seed} is filled in), got "
                                "int 5"),
        (["{tmp}/command.yaml"], "reports[0].command must be a string, got list ['report', 'x']"),
    ],
    "frontier": [(["nope", "--output_dir", "{tmp}/o"], "argument sweeps: 'nope' is neither an ood_sweep.json")],
    "report": [
        (["nope.json"], "argument sweep: 'nope.json' is neither an ood_sweep.json file nor a folder holding one"),
        (["{bad}"], "ood_sweep.json: not a sweep file (invalid JSON"),
        (["{tmp}/records.json"], "records.json: not a sweep file (a JSON object with the lists `records` and"),
        (["nope.json", "--rows", "diagonal"], "argument --rows: invalid choice: 'diagonal'"),
    ],
    "floor": [
        (["--model", "/nope"], "--model: '/nope' does not exist"),
        (["--model", "smollm2", "--limit", "0"], "--limit must be a positive number of examples, got 0"),
    ],
    "merge": [(["nope", "--output_dir", "{tmp}/o"], "argument sweeps: 'nope' is neither")],
    "compare": [
        ([], "the following arguments are required: reference, --against"),
        (["{tmp}", "--against", "nope"], "argument reference: '{tmp}' is neither"),
    ],
    "plot": [
        ([], "argument OUT_DIR: give run folders (OUT_DIR …) or --sweep"),
        (["{tmp}"], "argument OUT_DIR: '{tmp}' holds no layer_losses.json"),
        (["--sweep", "nope"], "argument --sweep: 'nope' is neither"),
    ],
    "plot-duals": [(["nope", "--output", "{tmp}/d.png"], "LOGS: ['nope'] do not exist")],
    "runs": [(["nope"], "RUN_DIR: no layer_losses.json in ['nope']")],
    "early-exit": [(["--model", "/nope", "--output_dir", "{tmp}/o"], "--model: '/nope' does not exist")],
    "alpaca-eval": [(["--model", "/nope", "--output_dir", "{tmp}/o"], "--model: '/nope' does not exist")],
    "generation-report": [(["nope"], "argument root: 'nope' is not a folder")],
    "install-assets": [(["--only", "bogus"], "argument --only: invalid choice: 'bogus'")],
    # the training commands: refused before accelerate launches anything
    "sft": [
        (["--bogus", "1"], "unrecognized arguments: --bogus (neither a flag of the recipe nor of accelerate launch)"),
        (["--accelerate_config", "zero4"], "--accelerate_config: 'zero4' is neither a file nor one of the "
         "configurations shipped with hf-cut (ddp, zero2, zero3, zero3_offload, fsdp2)"),
        (["--accelerate_config"], "--accelerate_config: expected a configuration name"),
        (["--descent_alpha", "0"], "`descent_alpha` must be a number in the open interval (0, 1)"),
        (["--model_name_or_path", "{empty}"], "--model_name_or_path: '{empty}' holds no model"),
        (["--config", "nope.yaml"], "argument --config: no such file 'nope.yaml'"),
        (["--num_processes", "two"], "argument --num_processes/--num-processes: invalid int value: 'two'"),
        # a word that is no flag's value would be taken by accelerate as the script to run
        (["--output_dir", "o", "stray"], "unrecognized argument 'stray': not a flag or a flag's value"),
        (["my_run.yaml"], "unrecognized argument 'my_run.yaml': not a flag or a flag's value (a YAML goes after"),
        (["--seed"], "argument --seed: expected one argument"),
        (["--learning", "1e-4"], "ambiguous option: --learning could match --learning_rate"),
        (["--accelerate_config=zero3", "--config_file", "x.yaml"], "--accelerate_config and --config_file both"),
        (["--config=nope.yaml"], "argument --config: no such file 'nope.yaml'"),
    ],
    "classify": [
        (["--dual_lr", "-1"], "`dual_lr` must be"),
        (["--accelerate_config", "nope"], "--accelerate_config: 'nope' is neither a file nor one of"),
    ],
    "denoise": [
        (["--noise_gamma", "-1"], "`noise_gamma` must be a finite number >= 0, got -1.0"),
        (["--max_steps", "2", "--bogus"], "unrecognized arguments: --bogus (neither a flag of the recipe nor"),
    ],
}

STUDIES = {
    "list.yaml": "- recipe: r.py\n",
    "broken.yaml": "recipe: [unclosed\n",
    "stages.yaml": "recipe: r.py\noutput_dir: o\nresults: r\nstages: 3\n",
    "run.yaml": "recipe: r.py\noutput_dir: o\nresults: r\nstages:\n  - {seeds: [0], runs: [erm]}\n",
    "seeds.yaml": "recipe: r.py\noutput_dir: o\nresults: r\nstages:\n  - {seeds: zero, runs: [{label: a}]}\n",
    "folder.yaml": "recipe: r.py\noutput_dir: o\nresults: r\nstages:\n  - {seeds: [0], runs: [{label: a, folder: 5}]}\n",
    "command.yaml": "recipe: r.py\noutput_dir: o\nresults: r\nstages:\n  - {seeds: [0], runs: [{label: a}]}\n"
                    "reports:\n  - {command: [report, x]}\n",
}


def test_every_subcommand_has_cases():
    assert set(CASES) == set(COMMANDS)


@pytest.mark.parametrize("command", sorted(CASES))
def test_subcommand_refuses_bad_input_in_one_line(command, tmp_path, not_a_model, malformed_sweep, capsys,
                                                   monkeypatch):  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    for name, text in STUDIES.items():
        (tmp_path / name).write_text(text)
    (tmp_path / "records.json").write_text(json.dumps({"records": 3}))
    fill = {"{tmp}": str(tmp_path), "{empty}": not_a_model, "{bad}": malformed_sweep}
    for argv, expected in CASES[command]:
        for key, value in fill.items():
            argv = [a.replace(key, value) for a in argv]
            expected = expected.replace(key, value)
        line = refusal([command, *argv], capsys)
        assert expected in line, (argv, line)


def test_unknown_subcommand(capsys):
    assert main(["bogus"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"hf-cut: error: unknown subcommand 'bogus'; one of: {', '.join(COMMANDS)}"


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {"HF_HUB_OFFLINE": "1", "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin", "PYTHONPATH": str(ROOT)}
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("argv,expected", [
    (["-m", "hf_cut", "study", "missing.yaml"], "hf-cut study: error: argument study: no such file 'missing.yaml'"),
    ([str(ROOT / "eval" / "report.py"), "nope.json"], "hf-cut report: error: argument sweep: 'nope.json'"),
    ([str(ROOT / "eval" / "ood_sweep.py"), "--model", "/nope", "--output_dir", "o"],
     "ood_sweep.py: error: --model: '/nope' does not exist"),
])  # fmt: skip
def test_commands_in_their_own_process(argv, expected, tmp_path):
    """What a user sees: the process's whole stderr is the one line (no traceback, no library noise before it)."""
    result = _run([sys.executable, *argv], tmp_path)
    assert result.returncode == 2 and result.stdout == "", result
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith(expected), result


@pytest.mark.parametrize("recipe", ["llama_sft", "roberta_cls", "unrolled_denoise"])
def test_recipes_refuse_a_missing_or_malformed_config(recipe, tmp_path):
    (tmp_path / "broken.yaml").write_text("output_dir: [unclosed\n")
    (tmp_path / "unknown.yaml").write_text("use_cpu: true\nbf16: false\nlearnin_rate: 0.1\n")
    script = str(ROOT / "recipes" / f"{recipe}.py")
    for config, expected in [("missing.yaml", "argument --config: no such file 'missing.yaml'"),
                             ("", "argument --config: expected a path"),
                             ("broken.yaml", "broken.yaml"), ("unknown.yaml", "learnin_rate")]:  # fmt: skip
        result = _run([sys.executable, script, "--config", *([config] if config else [])], tmp_path)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert lines[-1].startswith(f"{recipe}.py: error: ") and expected in lines[-1], lines


def test_a_metric_the_sweep_holds_is_accepted(tmp_path, capsys):
    record = {"model": "m", "gamma": 0.0, "seed": 0, "loss": 1.0, "layer_losses": [1.0], "pair_satisfaction": 0.5}
    aggregate = {"model": "m", "gamma": 0.0, "pair_satisfaction_mean": 0.5, "pair_satisfaction_std": 0.0,
                 "num_records": 1, "layer_losses_mean": [1.0]}  # fmt: skip
    (tmp_path / "ood_sweep.json").write_text(json.dumps({"records": [record], "aggregates": [aggregate]}))
    assert main(["report", str(tmp_path), "--metric", "pair_satisfaction", "--by_training_seed"]) == 0
    assert "0.500" in capsys.readouterr().out
    line = refusal(["report", str(tmp_path), "--metric", "rmse"], capsys)
    assert line.endswith("argument --metric: the sweep holds no rmse; it holds loss, pair_satisfaction.")


def test_an_error_inside_a_dependency_keeps_its_traceback(tmp_path):
    """Only refusals become one line: an error raised inside a dependency (here json, reading a table that hf-cut
    does not check) keeps its traceback and exit status 1."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "layer_losses.json").write_text("{not json")
    result = _run([sys.executable, "-m", "hf_cut", "runs", str(tmp_path / "runs")], tmp_path)
    assert result.returncode == 1 and "Traceback" in result.stderr and "JSONDecodeError" in result.stderr


def test_traceback_on_request(tmp_path, monkeypatch):
    """`HF_CUT_TRACEBACK=1` lets the exception through, for a bug report."""
    monkeypatch.setenv("HF_CUT_TRACEBACK", "1")
    (tmp_path / "ood_sweep.json").write_text(json.dumps({"records": 3}))
    with pytest.raises(ValueError, match="not a sweep file"):
        main(["report", str(tmp_path)])
