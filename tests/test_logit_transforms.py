"""The readout's logit transforms against logits built by hand.

Some heads change the logits after ``lm_head``: Gemma 2 / Gemma 3 / VaultGemma / NanoChat cap them
(``c · tanh(z / c)``, ``final_logit_softcapping``), Cohere and Cohere 2 multiply them (``logit_scale``), FalconH1 too
(``lm_head_multiplier``), Granite divides them (``logits_scaling``), HyperCLOVA X multiplies them by its
``logits_scaling``, and MiniCPM 3 divides the last hidden state by ``hidden_size / dim_model_base`` before its
bias-free head. For a tiny model of each class, with the transform at a value where it matters (the head's weights
scaled so that the raw logits are large), every layer's loss from the hf-cut readout must equal a naive cross-entropy
computed here from that layer's full logits: ``h_l`` from ``output_hidden_states``, the model's own final norm (taken
by its attribute name, not from hf-cut), ``lm_head``, then the transform written out by hand; and the last layer's
loss must equal the model's own ``loss``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import transformers

from hf_cut import ConstrainedSFTTrainer
from hf_cut.readout import LayerReadoutRequest, add_layer_readout
from tests.conftest import make_rows, train_args

VOCAB = 64
COMMON = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
              tie_word_embeddings=False)  # fmt: skip

# name → (config class, its transform options, the final norm's attribute on the backbone, the transform by hand)
CASES = {
    "gemma2-softcap": ("Gemma2Config", dict(head_dim=8, sliding_window=4, final_logit_softcapping=2.0), "norm",
                       lambda z: 2.0 * torch.tanh(z / 2.0)),
    "gemma3-text-softcap": ("Gemma3TextConfig", dict(head_dim=8, sliding_window=4, final_logit_softcapping=2.0), "norm",
                            lambda z: 2.0 * torch.tanh(z / 2.0)),
    "vaultgemma-softcap": ("VaultGemmaConfig", dict(head_dim=8, final_logit_softcapping=2.0), "norm",
                           lambda z: 2.0 * torch.tanh(z / 2.0)),
    "nanochat-softcap": ("NanoChatConfig", dict(final_logit_softcapping=2.0), "norm",
                         lambda z: 2.0 * torch.tanh(z / 2.0)),
    "cohere-logit_scale": ("CohereConfig", dict(logit_scale=0.3), "norm", lambda z: z * 0.3),
    "cohere2-logit_scale": ("Cohere2Config", dict(logit_scale=0.3, sliding_window=4), "norm", lambda z: z * 0.3),
    "granite-logits_scaling": ("GraniteConfig", dict(logits_scaling=4.0), "norm", lambda z: z / 4.0),
    # HyperCLOVA X's MuP head multiplies by `logits_scaling` where Granite divides
    "hyperclovax-logits_scaling": ("HyperCLOVAXConfig", dict(logits_scaling=4.0), "norm", lambda z: z * 4.0),
    # MiniCPM 3: h / (hidden_size / dim_model_base) = h / 4 before a head without bias, i.e. z / 4
    "minicpm3-dim_model_base": ("MiniCPM3Config", dict(num_key_value_heads=4, kv_lora_rank=8, q_lora_rank=16,
                                                       qk_nope_head_dim=8, qk_rope_head_dim=8, v_head_dim=8,
                                                       dim_model_base=8), "norm", lambda z: z / 4.0),
    "falcon_h1-lm_head_multiplier": ("FalconH1Config", dict(lm_head_multiplier=0.3, mamba_d_ssm=32, mamba_n_heads=4,
                                                            mamba_d_head=8, mamba_d_state=8, mamba_chunk_size=8),
                                     "final_layernorm", lambda z: z * 0.3),
}  # fmt: skip


def _model(name: str, vocab: int = VOCAB, **kwargs):
    config_name, extra, _, _ = CASES[name]
    torch.manual_seed(0)
    config = getattr(transformers, config_name)(vocab_size=vocab, **{**COMMON, **extra, **kwargs})
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    # raw logits of std ≈ 4: the cap saturates, and a scale of 0.3 or 1/4 changes every softmax
    with torch.no_grad():
        probe = torch.randint(0, vocab, (2, 9), generator=torch.Generator().manual_seed(1))
        raw = model.lm_head(model(input_ids=probe, output_hidden_states=True).hidden_states[-1])
        model.lm_head.weight.mul_(4.0 / raw.std())
    return model


def _batch(vocab: int = VOCAB):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab, (3, 11), generator=g)
    attention = torch.ones_like(ids)
    attention[1, 8:] = 0  # right padding
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt
    labels[attention == 0] = -100
    return ids, attention, labels


def _naive_layer_losses(model, name, ids, attention, labels, transform=True):
    """[L + 1] mean NLL over the label tokens, from every layer's full logits built here (float64 cross-entropy)."""
    _, _, norm_name, by_hand = CASES[name]
    norm = getattr(model.base_model, norm_name)
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=attention, output_hidden_states=True)
        states = out.hidden_states
        L = len(states) - 1
        # HF's last hidden state is already normalised: the hand transform of its head reproduces the model's logits
        last_logits = by_hand(model.lm_head(states[-1]))
        torch.testing.assert_close(last_logits, out.logits.to(last_logits.dtype), rtol=1e-5, atol=1e-5)
        losses = []
        for layer, h in enumerate(states):
            z = model.lm_head(h if layer == L else norm(h))
            logits = by_hand(z) if transform else z
            losses.append(F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).double(),
                                          labels[:, 1:].reshape(-1), ignore_index=-100))  # fmt: skip
    return torch.stack(losses)


@pytest.mark.parametrize("name", list(CASES))
def test_layer_losses_equal_hand_transformed_full_logits(name):
    model = _model(name)
    ids, attention, labels = _batch()
    expected = _naive_layer_losses(model, name, ids, attention, labels)
    untransformed = _naive_layer_losses(model, name, ids, attention, labels, transform=False)
    # the transform matters at every layer (else this test could not tell it was applied)
    assert torch.all((expected - untransformed).abs() > 0.05), (expected, untransformed)
    own = model(input_ids=ids, attention_mask=attention, labels=labels).loss.detach()
    assert own.item() == pytest.approx(expected[-1].item(), abs=1e-5)  # the naive last layer is the model's loss

    add_layer_readout(model)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest())
    assert out.layer_losses.shape == (model.config.num_hidden_layers + 1,)
    torch.testing.assert_close(out.layer_losses.detach().double(), expected, rtol=1e-5, atol=2e-5)
    assert out.loss.item() == pytest.approx(own.item(), abs=2e-5)
    # and the patched model's own forward (no request) still gives the model's loss
    plain = model(input_ids=ids, attention_mask=attention, labels=labels).loss
    assert plain.item() == pytest.approx(own.item(), abs=1e-6)


@pytest.mark.parametrize("name", ["gemma2-softcap", "cohere-logit_scale", "granite-logits_scaling",
                                  "hyperclovax-logits_scaling"])  # fmt: skip
def test_trainer_lagrangian_and_evaluation_use_the_transform(tmp_path, tokenizer, name):
    """Through ``ConstrainedSFTTrainer``: the training loss at λ = (0.5, 0.25) is the Lagrangian of the hand-transformed
    naive layer losses, and ``evaluate()`` logs them as ``eval_layer_loss/{l}``."""
    from datasets import Dataset

    vocab = len(tokenizer)
    model = _model(name, vocab=vocab, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                   bos_token_id=None)  # fmt: skip
    data = Dataset.from_list(make_rows(8))
    args = train_args(tmp_path, descent_alpha=0.2, per_device_eval_batch_size=8, per_device_train_batch_size=8)
    trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                    processing_class=tokenizer)  # fmt: skip
    trainer.duals.multipliers = torch.tensor([0.5, 0.25], dtype=torch.float64)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    ell = _naive_layer_losses(trainer.model, name, batch["input_ids"], batch["attention_mask"], batch["labels"])
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch)
    expected = ell[2] + 0.5 * (ell[1] - 0.8 * ell[0]) + 0.25 * (ell[2] - 0.8 * ell[1])
    assert loss.item() == pytest.approx(expected.item(), abs=2e-5)

    metrics = trainer.evaluate()
    eval_batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    ell = _naive_layer_losses(trainer.model, name, eval_batch["input_ids"], eval_batch["attention_mask"],
                              eval_batch["labels"])  # fmt: skip
    for layer in range(3):
        assert metrics[f"eval_layer_loss/{layer}"] == pytest.approx(ell[layer].item(), abs=2e-5), layer
    assert metrics["eval_loss"] == pytest.approx(ell[-1].item(), abs=2e-5)


def test_a_head_with_a_learned_scale_is_not_read_out_wrong():
    """Dory's ``lm_head`` multiplies its logits by a learned per-token scale (a parameter of the head, not a config
    field): a readout that used the head's weight alone would score every layer wrongly. It must either refuse the
    model or match the model's own loss at the last layer."""
    torch.manual_seed(0)
    config = transformers.DoryConfig(vocab_size=VOCAB, **COMMON)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        model.lm_head.logit_scale.uniform_(0.0, 0.2)  # far from its initial value (factor 1), different per token
    ids, _, labels = _batch()  # no padding: Dory's recurrent loops take no 2-D attention mask here
    own = model(input_ids=ids, labels=labels).loss.item()
    assert math.isfinite(own)
    try:
        add_layer_readout(model)
        out = model(input_ids=ids, labels=labels, layer_readout=LayerReadoutRequest())
    except ValueError:
        return  # refused: fine
    assert out.loss.item() == pytest.approx(own, abs=1e-5)
