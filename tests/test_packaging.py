"""The built wheel: what `pip install hf-cut` would give — the package with its data files, the `hf-cut` command, the
license, the version from one place — installed to a folder of its own and run from there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.test_distributed import _free_port

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of what the sdist holds (the build writes its `build/` folder there, not in the checkout)."""
    source, out = tmp_path_factory.mktemp("source"), tmp_path_factory.mktemp("wheel")
    shutil.copytree(ROOT / "hf_cut", source / "hf_cut", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(out),
                             str(source)], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    (path,) = out.glob("hf_cut-*.whl")
    return path


def test_wheel_contents(wheel):
    import hf_cut

    names = set(zipfile.ZipFile(wheel).namelist())
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert f"Version: {hf_cut.__version__}" in metadata and "License-Expression: Apache-2.0" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert {"hf_cut/py.typed", "hf_cut/cli/__init__.py", "hf_cut/evaluation/generation/local_annotator/configs.yaml"} <= names
    # what `hf-cut sft|classify|denoise` read: the recipes' default YAMLs and the accelerate configurations by name
    shipped = {f"hf_cut/recipes/{p.name}" for p in (ROOT / "hf_cut" / "recipes").glob("*.yaml")}
    shipped |= {f"hf_cut/accelerate_configs/{p.name}" for p in (ROOT / "accelerate_configs").glob("*.yaml")}
    assert len(shipped) == 8 and shipped <= names, shipped - names
    entry_points = zipfile.ZipFile(wheel).read(meta.replace("METADATA", "entry_points.txt")).decode()
    assert "hf-cut = hf_cut.cli:main" in entry_points
    assert not any(n.startswith(("tests/", "recipes/", "studies/", "docs/")) for n in names)


def test_installed_wheel_runs_its_command(wheel, tmp_path):
    """Installed on its own (its dependencies are this environment's), away from the repository: the command's
    entry point lists the subcommands and its `sweep --help` parses."""
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(target), str(wheel)],
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(target), "HF_HUB_OFFLINE": "1"}
    code = "import hf_cut, sys; from hf_cut.cli import main; print(hf_cut.__file__); sys.exit(main(sys.argv[1:]))"
    for args, expected in ((["--help"], "frontier"), (["sweep", "--help"], "--gammas")):
        result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env,
                                cwd=tmp_path, timeout=120)  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stdout.startswith(str(target)) and expected in result.stdout


# --- The wheel in a clean virtual environment, run from an empty folder: what a user who only ran `pip install` has


@pytest.fixture(scope="module")
def clean_venv(wheel, tmp_path_factory) -> Path:
    """A new virtual environment (no site packages of this one) with the wheel and its `deepspeed` extra installed
    from the package index: torch first, this environment's version from the CPU index (as scripts/install.sh does
    on a machine without a GPU), so that the wheel's `torch>=2.4` does not pull a CUDA build."""
    import torch

    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--retries", "1"]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    torch_version = torch.__version__.split("+")[0]
    for args in ([f"torch=={torch_version}", "--extra-index-url", "https://download.pytorch.org/whl/cpu"],
                 [f"{wheel}[deepspeed]"]):  # fmt: skip
        result = subprocess.run([*pip, *args], capture_output=True, text=True, timeout=1200,
                                env={**env, "DS_BUILD_OPS": "0"})  # fmt: skip
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return venv


def hf_cut_in(venv: Path, args: list, cwd: Path) -> subprocess.CompletedProcess:
    """`hf-cut ARGS` of the clean environment in ``cwd``: its own `bin/` first on PATH, nothing of the repository on
    the import path."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update(PATH=f"{venv / 'bin'}{os.pathsep}{env['PATH']}", HF_HUB_OFFLINE="1", CUDA_VISIBLE_DEVICES="",
               OMP_NUM_THREADS="1")  # fmt: skip
    result = subprocess.run([str(venv / "bin" / "hf-cut"), *map(str, args)], capture_output=True, text=True, env=env,
                            cwd=cwd, timeout=900)  # fmt: skip
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    return result


def test_installed_command_trains_the_default_in_an_empty_folder(clean_venv, tmp_path):
    """`hf-cut sft --output_dir out --max_steps 2` in an empty folder trains the built-in default: the same summary
    as the repository's `accelerate launch recipes/llama_sft.py` with the same two flags."""
    import hf_cut

    empty = tmp_path / "empty"
    empty.mkdir()
    result = hf_cut_in(clean_venv, ["sft", "--output_dir", "out", "--max_steps", "2"], empty)
    assert "Layer losses written to out/layer_losses.json" in result.stdout
    where = subprocess.run([str(clean_venv / "bin" / "python"), "-c", "import hf_cut; print(hf_cut.__file__)"],
                           capture_output=True, text=True, cwd=empty, timeout=120).stdout  # fmt: skip
    assert where.startswith(str(clean_venv)), where  # the wheel's copy, not the repository's
    assert sorted(p.name for p in empty.iterdir()) == ["out"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "accelerate.commands.launch", str(ROOT / "recipes" / "llama_sft.py"),
                    "--output_dir", str(tmp_path / "repo"), "--max_steps", "2"], check=True, capture_output=True,
                   env=env, cwd=ROOT, timeout=600)  # fmt: skip
    ours, theirs = (json.loads((d / "layer_losses.json").read_text()) for d in (empty / "out", tmp_path / "repo"))
    assert ours["global_step"] == 2 and ours["model"] == "tiny-llama-6x128" and hf_cut.__version__
    for key in ("layer_losses", "dual_variables", "eval_loss", "eval_mean_token_accuracy", "constraint_satisfaction"):
        assert ours[key] == theirs[key], key


def test_installed_command_runs_zero3_by_name_on_two_ranks(clean_venv, tmp_path):
    """`hf-cut sft --accelerate_config zero3` on 2 CPU processes, the tiny Llama given by name (a local folder, as a
    Hub name would be): DeepSpeed ZeRO-3 partitions the model and optimizer over both ranks (one shard file per rank
    in the checkpoint) and the checkpoint holds the duals the run reports."""
    import torch

    from tests.recipe_assets import write_tiny_llama

    empty = tmp_path / "empty"
    empty.mkdir()
    write_tiny_llama(empty / "tiny-llama")
    launch = ["--accelerate_config", "zero3", "--num_processes", "2", "--mixed_precision", "no",
              "--main_process_port", _free_port()]  # fmt: skip
    recipe = ["--model_name_or_path", "tiny-llama", "--max_steps", "2", "--save_strategy", "steps", "--save_steps", "2",
              "--output_dir", "z"]  # fmt: skip
    hf_cut_in(clean_venv, ["sft", *launch, *recipe], empty)
    shards = sorted(p.name for p in (empty / "z" / "checkpoint-2" / "global_step2").iterdir())
    assert shards == [f"zero_pp_rank_{r}_mp_rank_00_{kind}_states.pt" for r in (0, 1) for kind in ("model", "optim")]
    summary = json.loads((empty / "z" / "layer_losses.json").read_text())
    assert summary["global_step"] == 2 and summary["model"] == "tiny-llama"
    saved = torch.load(empty / "z" / "checkpoint-2" / "dual_variables.pt", weights_only=True)
    # the checkpoint keeps the float64 state, the summary the trainer's float32 view of it
    assert summary["dual_variables"] == pytest.approx(saved["multipliers"].tolist(), rel=1e-6)
    assert min(summary["dual_variables"]) > 0
