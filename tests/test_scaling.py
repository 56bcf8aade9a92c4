"""accelerate configs load and validate; a constrained checkpoint reloads with plain from_pretrained."""

from pathlib import Path

import pytest
import torch
import transformers
import yaml
from accelerate.commands.config.config_args import load_config_from_file

CONFIGS = sorted((Path(__file__).parent.parent / "accelerate_configs").glob("*.yaml"))
EXPECTED = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "zero3_offload": "DEEPSPEED", "fsdp2": "FSDP"}


def test_every_expected_config_is_shipped():
    assert {c.stem for c in CONFIGS} == set(EXPECTED)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_accelerate_config_loads(path):
    config = load_config_from_file(str(path))  # accelerate's own loader: unknown keys raise
    assert config.distributed_type.name == EXPECTED[path.stem]
    raw = yaml.safe_load(path.read_text())
    if path.stem.startswith("zero"):
        stage = int(path.stem[4])
        assert config.deepspeed_config["zero_stage"] == stage
        offload = "cpu" if "offload" in path.stem else "none"
        assert config.deepspeed_config["offload_param_device"] == offload
    if path.stem == "fsdp2":
        assert raw["fsdp_config"]["fsdp_version"] == 2
    assert config.mixed_precision == "bf16"


def test_checkpoint_reloads_with_plain_from_pretrained(tmp_path, tokenizer, dataset):
    from tests.conftest import tiny_trainer

    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "out" / "checkpoint-2"
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(checkpoint)
    trained = trainer.model.state_dict()
    assert set(reloaded.state_dict()) == set(trained)  # the readout adds no parameter
    for name, value in reloaded.state_dict().items():
        assert torch.equal(value, trained[name]), name
    card = (tmp_path / "out" / "README.md").read_text()
    assert "hf-cut" in card and "dual λ_l" in card and "Command:" in card
