"""hf_cut.cost: the FLOP model counts the architecture (from the config), so the plan of the default budget is the
same in fp32, bf16, 4-bit, with LoRA and under the sharding engines (the last two: tests/test_recipe_launchers.py)."""

from __future__ import annotations

import importlib.util

import pytest
import torch
import transformers

from hf_cut.cost import allocate, step_flops_per_token
from tests.conftest import need_installed

D, I, L, V, HEADS, KV = 64, 256, 4, 384, 4, 2  # width, MLP width, layers, vocabulary, heads, key/value heads


def config(**kwargs) -> transformers.LlamaConfig:
    return transformers.LlamaConfig(hidden_size=D, intermediate_size=I, num_hidden_layers=L, num_attention_heads=HEADS,
                                    num_key_value_heads=KV, vocab_size=V, tie_word_embeddings=False, **kwargs)  # fmt: skip


def hand_flops(checkpointing: bool = False) -> tuple[float, float]:
    """By hand, from the Llama block: q and o are d×d, k and v d×(d·kv/heads), the gated MLP three d×i matrices, two
    RMSNorm vectors per layer and the final norm; a step is 3 (4 with checkpointing) × 2 × body + 4 readouts."""
    head_dim = D // HEADS
    per_layer = 2 * D * D + 2 * D * KV * head_dim + 3 * D * I + 2 * D
    body = L * per_layer + D
    readout = 2.0 * V * D
    return (4.0 if checkpointing else 3.0) * 2.0 * body + 4.0 * readout, readout


@pytest.mark.parametrize("checkpointing", [False, True])
def test_flops_of_the_plain_model_by_hand(checkpointing):
    model = transformers.LlamaForCausalLM(config())
    assert step_flops_per_token(model, checkpointing) == hand_flops(checkpointing)


def _forms():
    yield "fp32", transformers.LlamaForCausalLM(config())
    yield "bf16", transformers.LlamaForCausalLM(config()).to(torch.bfloat16)
    from peft import LoraConfig, get_peft_model

    lora = get_peft_model(transformers.LlamaForCausalLM(config()), LoraConfig(r=8, target_modules="all-linear"))
    yield "lora", lora


@pytest.mark.parametrize("name", ["fp32", "bf16", "lora"])
def test_same_plan_for_every_form(name):
    model = dict(_forms())[name]
    plain, readout = hand_flops()
    assert step_flops_per_token(model, False) == (plain, readout)
    assert allocate(0.1, *step_flops_per_token(model, False), L) == allocate(0.1, plain, readout, L)


def test_same_plan_in_4bit(tmp_path):
    """A 4-bit model (bitsandbytes nf4, packed weights holding half the bytes' worth of numbers): the plain plan."""
    need_installed(importlib.util.find_spec("bitsandbytes") is not None, "bitsandbytes")
    transformers.LlamaForCausalLM(config()).save_pretrained(tmp_path)
    quant = transformers.BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4")
    model = transformers.AutoModelForCausalLM.from_pretrained(tmp_path, quantization_config=quant)
    packed = sum(p.numel() for p in model.parameters())
    assert packed < sum(p.numel() for p in transformers.LlamaForCausalLM(config()).parameters())  # what was misread
    assert step_flops_per_token(model, False) == hand_flops()
