"""`push_to_hub` from every recipe, offline: the upload mocked at the `huggingface_hub` boundary
(tests/push_recipe.py), every upload of a run recorded. Each upload is checked as an exact set of files: the trained
model and its record — weights (or a PEFT adapter), config, tokenizer, the card, the dual variables and the layer-loss
files — and nothing else (no optimizer state, no checkpoint folder), except the checkpoint folder that
`hub_strategy="checkpoint"` uploads to last-checkpoint/ on purpose; the Hub token given on the command line reaches
every upload call and no file of any upload; the card carries the metadata a Hub page needs."""

from __future__ import annotations

import json
import os
import re
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


SECRET = re.compile(r"hf_[A-Za-z0-9]{30,}")  # the shape of a Hub token (hf_ and 34 letters and digits)


def push(tmp_path: Path, recipe: str, *args) -> list[dict]:
    """Every upload of the run, in order (tests/push_recipe.py records them all)."""
    record = tmp_path / "upload.json"
    out = tmp_path / "out"
    cmd = [sys.executable, str(PUSH), str(record), str(ROOT / "recipes" / recipe), *map(str, args),
           "--output_dir", str(out), *HUB]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600, cwd=tmp_path)
    assert result.returncode == 0, f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-5000:]}"
    uploads = json.loads(record.read_text())
    for upload in uploads:
        # the token went to each upload call, and into no file of any upload, nor of the output folder
        assert upload["token"] == TOKEN and upload["repo_id"] == "someone/tiny-cut", upload["commit_message"]
        for name, text in upload["files"].items():
            assert TOKEN not in text and not SECRET.search(text), (upload["commit_message"], name)
    for path in out.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert TOKEN.encode() not in content and not SECRET.search(content.decode("latin-1")), path
    return uploads


def uploaded(uploads: list[dict]) -> list[tuple[str, str | None, set[str]]]:
    """(commit message, path in the repository, file names) of each upload."""
    return [(u["commit_message"], u["path_in_repo"], set(u["files"])) for u in uploads]


def card_metadata(files: dict) -> dict:
    text = files["README.md"]
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


# What a push of the output folder holds: the model (weights, config), the card, the duals, the run's record; the
# recipe's own `save_model` pushes first ("Model save"), before the run's record (layer_losses.*) is written, and the
# final push ("End of training") adds it
RECORD = {"layer_losses.json", "layer_losses.png"}
MODEL_FILES = {"config.json", "model.safetensors", "README.md", "dual_variables.pt", "training_args.bin"} | RECORD
LLAMA_TOKENIZER = {"tokenizer.json", "tokenizer_config.json", "chat_template.jinja"}
LLAMA_FILES = MODEL_FILES | LLAMA_TOKENIZER | {"generation_config.json"}
# a checkpoint folder, as `hub_strategy="checkpoint"` uploads it to last-checkpoint/: the training state with the duals
TRAINING_STATE = {"optimizer.pt", "scheduler.pt", "rng_state.pth", "trainer_state.json", "training_args.bin",
                  "dual_variables.pt"}  # fmt: skip
TINY_LLAMA_RUN = ["--max_steps", "2", "--num_train_examples", "32", "--num_test_examples", "8"]


def test_causal_lm_recipe_push(tmp_path):
    model = write_tiny_llama(tmp_path / "tiny-llama")
    uploads = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, "--max_steps", "2",
                   "--num_train_examples", "64", "--num_test_examples", "16")  # fmt: skip
    assert uploaded(uploads) == [("Model save", None, LLAMA_FILES - RECORD), ("End of training", None, LLAMA_FILES)]
    files = uploads[-1]["files"]
    meta = card_metadata(files)
    assert meta["license"] == "mit" and meta["library_name"] == "transformers"
    assert {"hf-cut", "arxiv:2601.17257", "trl", "sft"} <= set(meta["tags"])
    assert "base_model" not in meta  # a local folder with no Hub name recorded: none is invented
    assert "[None]" not in files["README.md"] and str(tmp_path) not in files["README.md"]
    assert "--hub_token '<redacted>'" in files["README.md"]


def test_checkpoint_pushes_every_save(tmp_path):
    """`hub_strategy="every_save"`, a save every step: each save pushes the output folder (the checkpoint's model files
    copied there, the duals of that step beside them) and never a checkpoint folder; then the two pushes above."""
    model = write_tiny_llama(tmp_path / "tiny-llama")
    uploads = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, *TINY_LLAMA_RUN,
                   "--save_strategy", "steps", "--save_steps", "1", "--hub_strategy", "every_save")  # fmt: skip
    model_files = LLAMA_FILES - RECORD
    assert uploaded(uploads) == [("Training in progress, step 1", None, model_files),
                                 ("Training in progress, step 2", None, model_files),
                                 ("Model save", None, model_files), ("End of training", None, LLAMA_FILES)]  # fmt: skip


def test_checkpoint_pushes_of_a_peft_adapter(tmp_path):
    """A LoRA run (`--use_peft`) under `hub_strategy="checkpoint"`: each save pushes the adapter (not the base
    weights) from the output folder, and the checkpoint folder, training state and duals included, to
    last-checkpoint/; then the "Model save" and final pushes, adapter only."""
    model = write_tiny_llama(tmp_path / "tiny-llama")
    uploads = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, *TINY_LLAMA_RUN, "--use_peft", "true",
                   "--lora_r", "4", "--lora_alpha", "8", "--save_strategy", "steps", "--save_steps", "1",
                   "--hub_strategy", "checkpoint")  # fmt: skip
    adapter = {"adapter_config.json", "adapter_model.safetensors", "README.md", "dual_variables.pt",
               "training_args.bin"} | LLAMA_TOKENIZER  # fmt: skip
    checkpoint = adapter | TRAINING_STATE
    assert uploaded(uploads) == [
        ("Training in progress, step 1", None, adapter),
        ("Training in progress, step 1, checkpoint", "last-checkpoint", checkpoint),
        ("Training in progress, step 2", None, adapter),
        ("Training in progress, step 2, checkpoint", "last-checkpoint", checkpoint),
        ("Model save", None, adapter),
        ("End of training", None, adapter | RECORD),
    ]
    assert json.loads(uploads[-1]["files"]["adapter_config.json"])["r"] == 4


def test_classifier_recipe_push(tmp_path):
    uploads = push(tmp_path, "roberta_cls.py", "--builtin_model", "tiny-bert", "--max_steps", "2",
                   "--num_train_examples", "64", "--num_test_examples", "16")  # fmt: skip
    files = MODEL_FILES | {"tokenizer.json", "tokenizer_config.json"}
    assert uploaded(uploads) == [("Model save", None, files - RECORD), ("End of training", None, files)]
    meta = card_metadata(uploads[-1]["files"])
    assert meta["license"] == "mit" and {"hf-cut", "arxiv:2601.17257"} <= set(meta["tags"])


def test_denoiser_recipe_push(tmp_path):
    uploads = push(tmp_path, "unrolled_denoise.py", "--max_steps", "2", "--num_train_examples", "64",
                   "--num_test_examples", "16", "--sweep_gammas", "0", "--sweep_seeds", "0")  # fmt: skip
    sweep = {"ood_sweep.json", "ood_sweep.csv", "metric_vs_gamma.png", "loss_vs_layer.png"}
    assert uploaded(uploads) == [("Model save", None, MODEL_FILES - RECORD),
                                 ("End of training", None, MODEL_FILES | sweep)]
    assert {"hf-cut", "arxiv:2601.17257"} <= set(card_metadata(uploads[-1]["files"])["tags"])


def test_hub_name_becomes_base_model(tmp_path):
    """A folder whose config.json records the Hub name it came from (`_name_or_path`) gives that name as
    `base_model`; the card names it in its text instead of `[None]`."""
    model = write_tiny_llama(tmp_path / "tiny-llama")
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "_name_or_path": "meta-llama/Llama-3.1-8B"}))
    uploads = push(tmp_path, "llama_sft.py", "--model_name_or_path", model, "--max_steps", "1",
                   "--num_train_examples", "32", "--num_test_examples", "8")  # fmt: skip
    files = uploads[-1]["files"]
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
