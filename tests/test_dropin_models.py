"""The drop-in holds wherever ``SFTTrainer`` does: every model dtype × mixed-precision setting it trains, and a model
whose final norm has a name of its own (LFM2's ``embedding_norm``), with plain ``SFTConfig``s."""

from __future__ import annotations

import copy
import itertools

import pytest
import torch
import transformers
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from hf_cut import ConstrainedSFTTrainer
from hf_cut.readout import LayerReadoutRequest, add_layer_readout
from tests.conftest import make_rows, tiny_causal_lm
from tests.test_readout_models import truncated_model_losses

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _config(tmp_path, name: str, precision: str) -> SFTConfig:
    return SFTConfig(output_dir=str(tmp_path / name), use_cpu=True, bf16=precision == "bf16", fp16=precision == "fp16",
                     activation_checkpointing=False, per_device_train_batch_size=4, max_steps=2, learning_rate=1e-3,
                     logging_steps=1, save_strategy="no", report_to=[], seed=0, disable_tqdm=True)  # fmt: skip


@pytest.mark.parametrize("dtype,precision", list(itertools.product(DTYPES, ["no", "bf16", "fp16"])))
def test_every_dtype_and_mixed_precision_sft_trainer_trains(tmp_path, tokenizer, dtype, precision):
    """The same first loss as SFTTrainer's (λ = 0: the Lagrangian is ℓ_L), and both train to the end."""
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).to(DTYPES[dtype])
    data = Dataset.from_list(make_rows(16))
    losses = []
    for name, cls in (("plain", SFTTrainer), ("ours", ConstrainedSFTTrainer)):
        trainer = cls(model=copy.deepcopy(model), args=_config(tmp_path, name, precision), train_dataset=data,
                      processing_class=tokenizer)  # fmt: skip
        trainer.train()
        losses.append([h["loss"] for h in trainer.state.log_history if "loss" in h])
    assert len(losses[1]) == 2 and all(torch.isfinite(torch.tensor(losses[1])))
    assert losses[1][0] == pytest.approx(losses[0][0], rel=1e-3 if dtype == "float32" and precision == "no" else 2e-2)


def _lfm2(vocab: int) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    config = transformers.Lfm2Config(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                     num_attention_heads=4, num_key_value_heads=2)  # fmt: skip
    return transformers.AutoModelForCausalLM.from_config(config).eval()


def test_lfm2_final_norm_found_from_the_forward():
    """LFM2 applies ``embedding_norm`` after its last layer: every layer's loss equals the model's own loss with
    only its first l layers kept."""
    model = _lfm2(64)
    ids = torch.randint(3, 64, (2, 10), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[:, :3] = -100
    expected = truncated_model_losses(model, ids, labels)
    add_layer_readout(model)
    out = model(input_ids=ids, labels=labels, layer_readout=LayerReadoutRequest())
    assert out.layer_losses.tolist() == pytest.approx(expected, abs=1e-5)
    assert len(set(round(v, 4) for v in expected)) == 4  # the layers differ: the check can fail


def test_lfm2_trains_with_a_plain_sft_config(tmp_path, tokenizer):
    trainer = ConstrainedSFTTrainer(model=_lfm2(len(tokenizer)), args=_config(tmp_path, "lfm2", "no"),
                                    train_dataset=Dataset.from_list(make_rows(16)), processing_class=tokenizer)  # fmt: skip
    trainer.train()
    assert trainer.num_layers == 3 and "layer_loss/3" in trainer.state.log_history[0]


def test_a_vision_language_model_is_refused_by_name_before_loading(tmp_path, tokenizer):
    """Given by name, the model is refused from its config alone: the folder holds no weights to load."""
    config = transformers.Qwen2VLConfig(text_config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                                         num_key_value_heads=2, intermediate_size=64, vocab_size=64),
                                        vision_config=dict(depth=2, embed_dim=32, hidden_size=32, num_heads=4))  # fmt: skip
    config.architectures = ["Qwen2VLForConditionalGeneration"]
    config.save_pretrained(tmp_path / "tiny-vl")
    with pytest.raises(ValueError, match=r"`model` \(Qwen2VLForConditionalGeneration\) is a vision-language model"):
        ConstrainedSFTTrainer(model=str(tmp_path / "tiny-vl"), args=_config(tmp_path, "vl", "no"),
                              train_dataset=Dataset.from_list(make_rows(4)), processing_class=tokenizer)  # fmt: skip
