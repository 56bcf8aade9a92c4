"""`push_to_hub` from every recipe, offline: the upload mocked at the `huggingface_hub` boundary
(tests/push_recipe.py). What is uploaded is the trained model and its record — weights, config, tokenizer, the card,
the dual variables and the layer-loss files — and nothing else (no optimizer state, no checkpoint); the Hub token given
on the command line reaches the upload call and no file; the card carries the metadata a Hub page needs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.recipe_assets import write_tiny_llama

ROOT = Path(__file__).resolve().parents[1]
PUSH = ROOT / "tests" / "push_recipe.py"
TOKEN = "hf_" + "x7" * 17  # shaped like a real token
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
HUB = ["--push_to_hub", "true", "--hub_model_id", "someone/tiny-cut", "--hub_token", TOKEN, "--license", "mit"]


def push(tmp_path: Path, recipe: str, *args) -> dict:
    record = tmp_path / "upload.json"
    out = tmp_path / "out"
    cmd = [sys.executable, str(PUSH), str(record), str(ROOT / "recipes" / recipe), *map(str, args),
           "--output_dir", str(out), *HUB]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    uploaded = json.loads(record.read_text())
    # the token went to the upload call, and into no file of the output folder (uploaded or not)
    assert uploaded["token"] == TOKEN and uploaded["repo_id"] == "someone/tiny-cut"
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    return uploaded["files"]


def card_metadata(files: dict) -> dict:
    text = files["README.md"]
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


MODEL_FILES = {"config.json", "model.safetensors", "README.md", "dual_variables.pt", "layer_losses.json",
               "layer_losses.png", "training_args.bin"}  # fmt: skip


def test_causal_lm_recipe_push(tmp_path):
    model = write_tiny_llama(tmp_path / "tiny-llama")
    files = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, "--max_steps", "2",
                 "--num_train_examples", "64", "--num_test_examples", "16")  # fmt: skip
    tokenizer_files = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
    assert set(files) == MODEL_FILES | tokenizer_files | {"generation_config.json"}
    meta = card_metadata(files)
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert {"hf-cut", "arxiv:2601.17257", "trl", "sft"} <= set(meta["tags"])
    assert "base_model" not in meta  # a local folder with no Hub name recorded: none is invented
    assert "[None]" not in files["README.md"] and str(tmp_path) not in files["README.md"]
    assert "--hub_token '<redacted>'" in files["README.md"]


def test_classifier_recipe_push(tmp_path):
    files = push(tmp_path, "roberta_cls.py", "--builtin_model", "tiny-bert", "--max_steps", "2",
                 "--num_train_examples", "64", "--num_test_examples", "16")  # fmt: skip
    assert MODEL_FILES <= set(files) and not any(f.startswith("checkpoint-") or "optimizer" in f for f in files)
    meta = card_metadata(files)
    assert meta["license"] == "mit" and {"hf-cut", "arxiv:2601.17257"} <= set(meta["tags"])


def test_denoiser_recipe_push(tmp_path):
    files = push(tmp_path, "unrolled_denoise.py", "--max_steps", "2", "--num_train_examples", "64",
                 "--num_test_examples", "16", "--sweep_gammas", "0", "--sweep_seeds", "0")  # fmt: skip
    sweep = {"ood_sweep.json", "ood_sweep.csv", "metric_vs_gamma.png", "loss_vs_layer.png"}
    assert set(files) == MODEL_FILES | sweep
    assert {"hf-cut", "arxiv:2601.17257"} <= set(card_metadata(files)["tags"])


def test_hub_name_becomes_base_model(tmp_path):
    """A folder whose config.json records the Hub name it came from (`_name_or_path`) gives that name as
    `base_model`; the card names it in its text instead of `[None]`."""
    model = write_tiny_llama(tmp_path / "tiny-llama")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "_name_or_path": "meta-llama/Llama-3.1-8B"}))
    files = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, "--max_steps", "1",
                 "--num_train_examples", "32", "--num_test_examples", "8")  # fmt: skip
    assert card_metadata(files)["base_model"] == "meta-llama/Llama-3.1-8B"
    assert "[meta-llama/Llama-3.1-8B](https://huggingface.co/meta-llama/Llama-3.1-8B)" in files["README.md"]


@pytest.mark.parametrize("argv, expected", [
    (["--hub_token", "abc"], "--hub_token '<redacted>'"),
    (["--hub_token=abc"], "'--hub_token=<redacted>'"),
    (["--wandb_api_key", "k", "--db_password=p"], "--wandb_api_key '<redacted>' '--db_password=<redacted>'"),
    (["MY_SECRET=s", "--seed", "3"], "'MY_SECRET=<redacted>' --seed 3"),
    (["--note", "hf_abcdefghijkl"], "--note '<redacted>'"),
    (["/home/me/models/llama", "--output_dir=/scratch/x/run1", "recipes/a.yaml"], "llama --output_dir=run1 recipes/a.yaml"),
])  # fmt: skip
def test_redact_command(argv, expected):
    from hf_cut.model_card import redact_command

    assert redact_command(argv) == expected


def test_arguments_pickle_without_the_token(tmp_path):
    import copy
    import pickle

    from tests.conftest import train_args

    args = train_args(tmp_path, hub_token=TOKEN)
    assert pickle.loads(pickle.dumps(args)).hub_token is None
    assert copy.deepcopy(args).hub_token == TOKEN and copy.copy(args).hub_token == TOKEN
