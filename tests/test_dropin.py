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
# the second change, for the constraint options as flags: the config class too
SWAP_CONFIG = ("    dataclass_types = (ScriptArguments, SFTConfig,",
               "    from hf_cut import ConstrainedSFTConfig as SFTConfig\n    dataclass_types = (ScriptArguments, SFTConfig,")


@pytest.fixture(scope="module")
def swapped_script(tmp_path_factory) -> Path:
    source = TRL_SCRIPT.read_text()
    assert source.count(SWAP[0]) == 1, "TRL's sft.py changed its import line"
    path = tmp_path_factory.mktemp("script") / "sft.py"
    path.write_text(source.replace(*SWAP))  # the one-line change a user makes
    return path


@pytest.fixture(scope="module")
def swapped_config_script(swapped_script) -> Path:
    source = swapped_script.read_text()
    assert source.count(SWAP_CONFIG[0]) == 1, "TRL's sft.py changed its config line"
    path = swapped_script.with_name("sft_config.py")
    path.write_text(source.replace(*SWAP_CONFIG))
    return path


@pytest.fixture(scope="module")
def model_and_data(tmp_path_factory, tokenizer):
    root = tmp_path_factory.mktemp("assets")
    model_dir = root / "tiny-llama"
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id, num_layers=4).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    data_dir = root / "my-dataset"
    data_dir.mkdir()
    with open(data_dir / "train.jsonl", "w") as f:
        for row in make_rows(32):
            f.write(json.dumps(row) + "\n")
    return model_dir, data_dir


def _run_script(script, model_and_data, out, steps: int, *extra: str) -> list[dict]:
    """Run the script for ``steps`` steps, a checkpoint at the end; the logged records that carry the duals."""
    model_dir, data_dir = model_and_data
    cmd = [
        sys.executable, str(script),
        "--model_name_or_path", str(model_dir), "--dataset_name", str(data_dir),
        "--output_dir", str(out), "--max_steps", str(steps), "--per_device_train_batch_size", "4",
        "--use_cpu", "--bf16", "false", "--gradient_checkpointing", "false", "--report_to", "none",
        "--logging_steps", "1", "--save_strategy", "steps", "--save_steps", str(steps), *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    state = json.loads((out / f"checkpoint-{steps}" / "trainer_state.json").read_text())
    return [h for h in state["log_history"] if "dual/1" in h]


@pytest.mark.parametrize("peft", [False, True])
def test_trl_sft_script_with_constrained_trainer(swapped_script, model_and_data, tmp_path, peft):
    out = tmp_path / "out"
    lora = ["--use_peft", "--lora_r", "4", "--lora_target_modules", "q_proj", "v_proj"] if peft else []
    logged = _run_script(swapped_script, model_and_data, out, 3, *lora)
    assert len(logged) == 3 and logged[-1]["dual/1"] > 0  # duals moved under the default constraints
    assert (out / "checkpoint-3" / "dual_variables.pt").is_file()
    assert "hf-cut" in (out / "README.md").read_text()
    saved = "adapter_model.safetensors" if peft else "model.safetensors"
    assert (out / saved).is_file()


def test_trl_sft_script_with_constraint_flags(swapped_config_script, model_and_data, tmp_path):
    """Both classes swapped, `--dual_lr 0.5` on the 4-layer model with the default resilience (β = 1/4 < η_d, refused
    by an earlier release): trains, and the logged duals follow the implicit step at η_d = 0.5 from the logged slacks."""
    logged = _run_script(swapped_config_script, model_and_data, tmp_path / "out", 6, "--dual_lr", "0.5")
    assert len(logged) == 6
    duals = [[h[f"dual/{l}"] for l in range(1, 5)] for h in logged]
    slacks = [[h[f"slack/{l}"] for l in range(1, 5)] for h in logged]
    # the implicit resilient step recomputed by hand from the logged slacks (one micro-batch a step, logged after
    # the step's dual update): λ ← max(0, (λ + 0.5 ŝ) / (1 + 0.5/β)), β = 1/4; with the flag dropped (η_d = 0.01)
    # the recurrence would give other values
    lam = [0.0] * 4
    for row, slack in zip(duals, slacks):
        lam = [max(0.0, (lam[l] + 0.5 * slack[l]) / (1 + 0.5 / 0.25)) for l in range(4)]
        assert row == pytest.approx(lam, abs=1e-5)
    assert max(lam) > 0
