"""Every recipe YAML on the launcher its docs give, as a user runs it: the recipe's own script and YAML, the model
given by name (a local folder of a tiny model of the same class, as a Hub name would be), the data as a local copy
in the Hub set's layout, a few steps. Only what cannot run here is overridden: the model, the data, the steps, and
`bf16` (this CPU has no bf16 training: `--bf16 false`, the model's `dtype` kept), `report_to` (TensorBoard is not a
dependency). The Llama 3.1 8B recipe runs on one process, on 2 gloo ranks with DDP, DeepSpeed ZeRO-3 (constructing
the model by name inside `zero.Init`, with its default `layer_loss_budget`) and FSDP2, and as QLoRA; ZeRO-3 saves a
checkpoint holding the duals and resumes from it. What does not run on CPU is listed in docs/scaling.md.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import need_installed
from tests.recipe_assets import (
    write_alpaca_json,
    write_classification_splits,
    write_frame_folders,
    write_tiny_llama,
    write_tiny_roberta,
)
from tests.test_distributed import _free_port

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
LAUNCH = ROOT / "tests" / "distributed" / "launch_recipe.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}


def run(cmd: list[str], cwd: Path) -> None:
    result = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, timeout=600, cwd=cwd)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"


def torchrun(engine: str, recipe: Path, args: list, cwd: Path) -> None:
    """2 gloo ranks of ``recipe`` on ``engine`` (tests/distributed/launch_recipe.py)."""
    run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", _free_port(),
         LAUNCH, engine, recipe, *args], cwd)  # fmt: skip


def summary(output_dir: Path) -> dict:
    return json.loads((output_dir / "layer_losses.json").read_text())


@pytest.fixture(scope="module")
def assets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    return {"llama": write_tiny_llama(root / "tiny-llama"), "alpaca": write_alpaca_json(root / "alpaca.json")}


def llama_8b_args(assets, output_dir: Path, *extra) -> list:
    """The 8B recipe with the tiny Llama by name and a local copy of Alpaca's layout; its options otherwise kept."""
    return ["--config", RECIPES / "llama31_8b_alpaca.yaml", "--model_name_or_path", assets["llama"],
            "--dataset_name", assets["alpaca"], "--max_steps", "2", "--bf16", "false", "--report_to", "none",
            "--output_dir", output_dir, *extra]  # fmt: skip


@pytest.fixture(scope="module")
def one_process_8b(assets, tmp_path_factory) -> dict:
    """The reference: one process with the global batch of 2 ranks (8 sequences × 8 accumulation steps)."""
    out = tmp_path_factory.mktemp("one") / "out"
    run([sys.executable, RECIPES / "llama_sft.py",
         *llama_8b_args(assets, out, "--use_cpu", "true", "--per_device_train_batch_size", "8")], out.parent)  # fmt: skip
    return {**summary(out), "output_dir": str(out)}


def assert_close_to_one_process(result: dict, reference: dict) -> None:
    """The default budget scores the intermediate layers on a random share of each rank's tokens, so 2 ranks draw
    other tokens than one process: the duals agree to the sampling noise of two dual steps, not to rounding. Exact
    agreement with every token scored is tests/test_distributed.py's.

    Measured (these runs, seeded, the same on a rerun): max |Δλ| 0.0125 (DDP), 0.0062 (ZeRO-3), 0.0063 (FSDP2), with
    λ ≈ 0.64–0.69; |Δ eval loss| 3.8e-6 (DDP), 0.0051 (ZeRO-3), 0.0011 (FSDP2). The tolerances are twice the largest:
    0.025 and 0.01 — room for another draw of the same noise (a library that consumes the seed otherwise), not for a
    dual step off by a few percent (≈ 0.03 on λ ≈ 0.65)."""
    assert result["global_step"] == reference["global_step"] == 2
    duals, ref = torch.tensor(result["dual_variables"]), torch.tensor(reference["dual_variables"])
    assert torch.all(ref > 0.3)  # two dual steps at η_d = 1.0 moved λ
    assert torch.allclose(duals, ref, rtol=0, atol=0.025), (duals, ref)
    assert abs(result["eval_loss"] - reference["eval_loss"]) < 0.01


@pytest.mark.parametrize("engine", ["ddp", "zero3", "fsdp2"])
def test_8b_recipe_on_two_ranks(assets, one_process_8b, tmp_path, engine):
    if engine == "zero3":
        need_installed(importlib.util.find_spec("deepspeed") is not None, "deepspeed")
    out = tmp_path / "out"
    torchrun(engine, RECIPES / "llama_sft.py", llama_8b_args(assets, out), tmp_path)
    result = summary(out)
    assert_close_to_one_process(result, one_process_8b)
    card = (out / "README.md").read_text()
    # the plan of the default budget is the one-process plan: the costs come from the config, not the shards
    assert "| layer_loss_budget | 0.1 |" in card
    plan = [line for line in card.splitlines() if line.startswith(("| layer_sample_size", "| layer_loss_token"))]
    reference_card = (Path(one_process_8b["output_dir"]) / "README.md").read_text()
    assert plan and all(line in reference_card for line in plan)


def test_8b_recipe_under_zero3_checkpoints_and_resumes(assets, tmp_path):
    """ZeRO-3, 3 steps with a checkpoint at step 2 (holding the duals), then a new 2-rank run resumed from it ends
    where the uninterrupted one did."""
    need_installed(importlib.util.find_spec("deepspeed") is not None, "deepspeed")
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    steps = ["--max_steps", "3", "--save_steps", "2"]
    torchrun("zero3", RECIPES / "llama_sft.py", [*llama_8b_args(assets, full), *steps], tmp_path)
    checkpoint = full / "checkpoint-2"
    saved = torch.load(checkpoint / "dual_variables.pt", weights_only=True)
    assert torch.all(saved["multipliers"] > 0)
    assert (checkpoint / "global_step2").is_dir()  # DeepSpeed's sharded optimizer state
    torchrun("zero3", RECIPES / "llama_sft.py",
             [*llama_8b_args(assets, resumed), *steps, "--resume_from_checkpoint", checkpoint], tmp_path)  # fmt: skip
    a, b = summary(full), summary(resumed)
    assert b["global_step"] == 3
    assert torch.allclose(torch.tensor(a["dual_variables"]), torch.tensor(b["dual_variables"]), atol=1e-5)
    assert abs(a["eval_loss"] - b["eval_loss"]) < 1e-5


def test_8b_recipe_as_qlora(assets, tmp_path):
    """The documented QLoRA command (4-bit base, LoRA on every linear layer), one process."""
    need_installed(importlib.util.find_spec("bitsandbytes") is not None, "bitsandbytes")
    out = tmp_path / "out"
    run([sys.executable, RECIPES / "llama_sft.py", *llama_8b_args(assets, out, "--use_cpu", "true"),
         "--use_peft", "--load_in_4bit", "--lora_r", "16", "--lora_alpha", "32", "--lora_target_modules",
         "all-linear", "--learning_rate", "2e-4"], tmp_path)  # fmt: skip
    result = summary(out)
    assert result["global_step"] == 2 and all(d > 0 for d in result["dual_variables"])
    assert (out / "adapter_config.json").is_file() and not (out / "model.safetensors").exists()


def test_smollm2_recipe_with_the_model_by_name(assets, tmp_path):
    """recipes/smollm2_sft.yaml on its launcher (`accelerate launch`, one CPU process), the model given by path."""
    out = tmp_path / "out"
    run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
         RECIPES / "llama_sft.py", "--config", RECIPES / "smollm2_sft.yaml", "--model_name_or_path", assets["llama"],
         "--max_steps", "2", "--num_train_examples", "32", "--num_test_examples", "16", "--output_dir", out],
        tmp_path)  # fmt: skip
    result = summary(out)
    assert result["model"] == str(assets["llama"]) and result["num_layers"] == 4 and result["global_step"] == 2


@pytest.mark.parametrize("name", ["roberta_imdb.yaml", "roberta_mnli.yaml"])
def test_classifier_recipes(tmp_path, name):
    """roberta-base on IMDb and on MNLI (`accelerate launch`, one process): a tiny RoBERTa by path, the sets as local
    copies in their Hub layout (MNLI: premise/hypothesis, two validation splits)."""
    from hf_cut.data.classification import builtin_classification_dataset

    mnli = name == "roberta_mnli.yaml"
    texts = builtin_classification_dataset(num_train=200, num_test=8, seed=0)["train"]["text"]
    model = write_tiny_roberta(tmp_path / "tiny-roberta", texts, num_labels=3 if mnli else 2)
    splits = {"train": 64, "validation_matched": 16, "validation_mismatched": 16} if mnli else {"train": 64, "test": 16}
    data = write_classification_splits(tmp_path / "data", splits, pairs=mnli)
    out = tmp_path / "out"
    run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--cpu",
         RECIPES / "roberta_cls.py", "--config", RECIPES / name, "--model_name_or_path", model,
         "--dataset_name", data, "--dataset_config", "none", "--max_steps", "2", "--bf16", "false",
         "--dataloader_num_workers", "0", "--output_dir", out], tmp_path)  # fmt: skip
    result = summary(out)
    assert result["global_step"] == 2 and result["num_layers"] == 3
    if mnli:
        assert all(split in json.dumps(result) for split in ("validation_matched", "validation_mismatched"))


def test_unrolled_recipe_on_ucsd_frames(tmp_path):
    """recipes/unrolled_ucsd.yaml on frame folders in UCSD Ped2's layout (Train/TrainNNN, Test/TestNNN)."""
    root = tmp_path / "UCSDped2"
    write_frame_folders(root / "Train", {"Train001": 24, "Train002": 20}, seed=0)
    write_frame_folders(root / "Test", {"Test001": 20}, seed=1)
    out = tmp_path / "out"
    run([sys.executable, RECIPES / "unrolled_denoise.py", "--config", RECIPES / "unrolled_ucsd.yaml",
         "--data_dir", root, "--max_steps", "2", "--sweep_gammas", "0", "1", "--sweep_seeds", "0",
         "--output_dir", out], tmp_path)  # fmt: skip
    result = summary(out)
    assert result["global_step"] == 2 and result["num_layers"] == 10
    assert (out / "ood_sweep.json").is_file()
