"""accelerate configs load and validate; a constrained checkpoint reloads with plain from_pretrained."""

from pathlib import Path

import pytest
import torch
import transformers
import yaml
from accelerate.commands.config.config_args import load_config_from_file

from tests.conftest import require

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


def test_qlora_4bit_trains_adapters_under_the_constraint(tmp_path, tokenizer, dataset):
    """QLoRA through TRL's own path (``get_quantization_config`` + ``peft_config``, model by name), on CPU: the
    base stays frozen in nf4 and only the adapters move; the readout reads the 4-bit model's (bf16) head."""
    require("bitsandbytes")  # QLoRA needs it (pip install -e '.[quant]'); a failure where CI installed it
    from peft import LoraConfig
    from trl import ModelConfig, get_quantization_config

    from hf_cut import ConstrainedSFTTrainer
    from hf_cut.readout import LayerReadoutRequest
    from tests.conftest import tiny_causal_lm, train_args

    path = tmp_path / "tiny-llama"
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(path)
    tokenizer.save_pretrained(path)
    quantization = get_quantization_config(ModelConfig(load_in_4bit=True, dtype="float32"))
    args = train_args(tmp_path, max_steps=3, learning_rate=1e-2, dual_init=1.0)
    trainer = ConstrainedSFTTrainer(
        model=str(path),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        quantization_config=quantization,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM"),
    )
    base = trainer.model.get_base_model()
    assert type(base.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all("lora_" in n for n in moved)  # adapters only: the 4-bit base and the head are frozen
    # λ by hand: from dual_init 1.0, hard constraints, λ ← max(0, λ + 0.5 s) with each step's slack
    # s_l = ℓ_l − 0.9 ℓ_{l−1} from that step's logged layer losses (one batch per step, one step per log); the logged
    # ℓ_L is recomputed over every token in float32, λ_L off by ≤ 2.4e-7 (measured): 1e-6
    logs = [h for h in trainer.state.log_history if "layer_loss/1" in h]
    assert len(logs) == 3
    lam = [1.0, 1.0, 1.0]
    for log in logs:
        ell = [log[f"layer_loss/{l}"] for l in range(4)]
        lam = [max(0.0, lam[l - 1] + 0.5 * (ell[l] - 0.9 * ell[l - 1])) for l in (1, 2, 3)]
        assert [log[f"dual/{l}"] for l in (1, 2, 3)] == pytest.approx(lam, abs=1e-6)
    assert trainer.dual_variables.tolist() == pytest.approx(lam, abs=1e-6) and lam != [1.0, 1.0, 1.0]
    # the readout on the quantised model equals full logits through its own (4-bit) layers, norm and head
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    # train mode (the tiny Llama has no dropout): in eval mode bitsandbytes 0.50's CPU path repacks 4-bit weights for
    # AVX512-bf16 kernels, which fails on layers narrower than its 64-value block, as the tiny model's are
    trainer.model.train()
    with torch.no_grad():
        out = trainer.model(**batch, layer_readout=LayerReadoutRequest())
        states = trainer.model(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True
        ).hidden_states
        labels = batch["labels"][:, 1:]
        naive = []
        for layer, h in enumerate(states):
            h = h if layer == len(states) - 1 else base.model.norm(h)
            logits = base.lm_head(h).float()[:, :-1]
            naive.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100))
    assert torch.allclose(out.layer_losses, torch.stack(naive), atol=1e-4)
