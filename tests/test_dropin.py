"""ConstrainedSFTTrainer in TRL's own, otherwise unmodified, SFT script: model by path, dataset by name, ± PEFT."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import trl

from tests.conftest import make_rows, tiny_causal_lm

TRL_SCRIPT = Path(trl.__file__).parent / "scripts" / "sft.py"
SWAP = ("from trl import SFTTrainer,", "from hf_cut import ConstrainedSFTTrainer as SFTTrainer\n    from trl import")


@pytest.fixture(scope="module")
def swapped_script(tmp_path_factory) -> Path:
    source = TRL_SCRIPT.read_text()
    assert source.count(SWAP[0]) == 1, "TRL's sft.py changed its import line"
    path = tmp_path_factory.mktemp("script") / "sft.py"
    path.write_text(source.replace(*SWAP))  # the one-line change a user makes
    return path


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("assets")
    model_dir = root / "tiny-llama"
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data_dir = root / "my-dataset"
    data_dir.mkdir()
    with open(data_dir / "train.jsonl", "w") as f:
        for row in make_rows(32):
            f.write(json.dumps(row) + "\n")
    return model_dir, data_dir


@pytest.mark.parametrize("peft", [False, True])
def test_trl_sft_script_with_constrained_trainer(swapped_script, model_and_data, tmp_path, peft):
    model_dir, data_dir = model_and_data
    out = tmp_path / "out"
    cmd = [
        sys.executable, str(swapped_script),
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data_dir),
        "--output_dir", str(out), "--max_steps", "3", "--per_device_train_batch_size", "4",
        "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
        "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", "3",
    ]  # fmt: skip
    if peft:
        cmd += ["--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    logged = [h for h in state["log_history"] if "dual/1" in h]
    assert len(logged) == 3 and logged[-1]["dual/1"] > 0  # duals moved under the default constraints
    assert (out / "checkpoint-3" / "dual_variables.pt").is_file()
    assert "hf-cut" in (out / "README.md").read_text()
    saved = "adapter_model.safetensors" if peft else "model.safetensors"
    assert (out / saved).is_file()
