"""The layer terms and the dual step at λ > 0 under TRL's data options, against a naive computation.

For each option (packing "bfd" and "wrapped", ``padding_free``, ``completion_only_loss`` True / False,
``assistant_only_loss``, ``neftune_noise_alpha``) one optimizer step of ``ConstrainedSFTTrainer.train()`` runs from
known duals λ = (0.4, 0.15, 0.7), α = 0.2, η_d = 0.5, every layer on every token. A spy records what the step really
used: the batch the model was called with, the embeddings its first decoder layer read (NEFTune's noise included),
the loss ``compute_loss`` returned and the gradients the optimizer received. The test then recomputes, on a copy of
the model taken before the step:

- every layer's loss ℓ_l from full logits (the model's ``norm`` for l < L, then ``lm_head``; float64 cross-entropy),
  running each packed / padding-free sequence *on its own* (positions from 0, no attention across sequences) and each
  padded row without its padding, over the label tokens — checked first to be exactly the completion (or assistant)
  tokens, found by tokenising the raw rows here;
- the Lagrangian ℓ_L + Σ_l λ_l (ℓ_l − (1 − α)·sg(ℓ_{l−1})) (docs/method.md, "Loss"), its value and its gradient;
- the hard projected dual step λ ← max(0, λ + η_d ŝ), ŝ_l = ℓ_l − (1 − α) ℓ_{l−1}, and the resilient one
  λ ← max(0, (λ + η_d ŝ) / (1 + η_d / β)) (docs/method.md, "Dual step").
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset
from transformers import TrainerCallback

from tests.conftest import make_rows, tiny_trainer

LAMBDA = [0.4, 0.15, 0.7]
ALPHA = 0.2
ETA = 0.5
NEFTUNE_ALPHA = 5.0

# {% generation %} marks the assistant's tokens for `assistant_only_loss` (as in tests/test_loss_options.py)
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
                 "{{ eos_token }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")  # fmt: skip

OPTIONS = {
    "packing-bfd": dict(packing=True, packing_strategy="bfd", max_length=32),
    "packing-wrapped": dict(packing=True, packing_strategy="wrapped", max_length=32),
    "padding_free": dict(padding_free=True, max_length=None),
    "completion_only_loss": dict(completion_only_loss=True),
    "completion_only_loss-false": dict(completion_only_loss=False),
    "assistant_only_loss": dict(assistant_only_loss=True),
    "neftune": dict(neftune_noise_alpha=NEFTUNE_ALPHA),
}


def _rows():
    return make_rows(16)


def _dataset(name):
    if name != "assistant_only_loss":
        return Dataset.from_list(_rows())
    return Dataset.from_list([
        {"messages": [{"role": "user", "content": r["prompt"]}, {"role": "assistant", "content": r["completion"]}]}
        for r in _rows()
    ])


def _expected_label_masks(tokenizer, all_tokens: bool) -> dict[tuple, list[bool]]:
    """For each raw row, its token ids (prompt, completion, eos) → which of them are trained on: the completion and its
    eos (for the chat template: the assistant's content and eos), or every token (``completion_only_loss=False``).
    Tokenised here, independently of TRL's preparation."""
    masks = {}
    for row in _rows():
        prompt = tokenizer(row["prompt"], add_special_tokens=False).input_ids
        completion = tokenizer(row["completion"], add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        masks[tuple(prompt + completion)] = [all_tokens] * len(prompt) + [True] * len(completion)
    return masks


class Spy(TrainerCallback):
    """Records what one training step used: the model's inputs, the first decoder layer's input, the returned loss and
    the gradients just before the optimizer step."""

    def __init__(self, trainer):
        self.inputs, self.layer0_input, self.losses, self.grads = [], [], [], {}
        model = trainer.model
        model.register_forward_pre_hook(lambda m, args, kwargs: self.inputs.append(dict(kwargs)), with_kwargs=True)
        model.model.layers[0].register_forward_pre_hook(
            lambda m, args, kwargs: self.layer0_input.append((args[0] if args else kwargs["hidden_states"]).detach()),
            with_kwargs=True,
        )
        compute_loss = trainer.compute_loss
        trainer.compute_loss = lambda *a, **k: self.losses.append(compute_loss(*a, **k)) or self.losses[-1]
        self.model = model

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads = {n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None}


def _segments(batch):
    """(row, start, end) of each sequence: split at every position id 0 (packed / padding-free rows), else a row
    without its padding (right padding: the attended positions are a prefix)."""
    segments = []
    for row in range(batch["input_ids"].shape[0]):
        if "position_ids" in batch:
            starts = (batch["position_ids"][row] == 0).nonzero().flatten().tolist()
            ends = starts[1:] + [batch["input_ids"].shape[1]]
            segments += [(row, s, e) for s, e in zip(starts, ends)]
        else:
            attended = batch.get("attention_mask", torch.ones_like(batch["input_ids"]))[row]
            n = int(attended.sum())
            assert attended[:n].all(), "right padding expected"
            segments.append((row, 0, n))
    return segments


def _naive_layer_losses(model, batch, segments, noise=None):
    """[L + 1] mean NLL over the label tokens, with grad: each segment through the backbone alone (its embeddings plus
    ``noise`` when given), every state through the model's own final norm (the last one is already normalised), then
    ``lm_head``, then a float64 cross-entropy summed over the segment's label tokens; divided by their total count."""
    sums, count = 0.0, 0
    for row, start, end in segments:
        ids = batch["input_ids"][row, start:end][None]
        labels = batch["labels"][row, start:end]
        embeds = model.model.embed_tokens(ids)
        if noise is not None:
            embeds = embeds + noise[row, start:end][None]
        states = model.model(inputs_embeds=embeds, output_hidden_states=True).hidden_states
        L = len(states) - 1
        per_layer = []
        for layer, h in enumerate(states):
            logits = model.lm_head(h if layer == L else model.model.norm(h))[0, :-1]
            per_layer.append(F.cross_entropy(logits.double(), labels[1:], ignore_index=-100, reduction="sum"))
        sums = sums + torch.stack(per_layer)
        count += int((labels[1:] != -100).sum())
    assert count > 0
    return sums / count


# every option with hard constraints (β = None); the resilient step (β = 0.25) on two of them
CASES = [(name, None) for name in OPTIONS] + [("packing-bfd", 0.25), ("completion_only_loss", 0.25)]


@pytest.mark.parametrize("name,beta", CASES, ids=[f"{n}-{'hard' if b is None else 'resilient'}" for n, b in CASES])
def test_layer_terms_and_dual_step_under_option(tmp_path, tokenizer, name, beta):
    tok = tokenizer
    if name == "assistant_only_loss":
        tok = copy.deepcopy(tokenizer)
        tok.chat_template = CHAT_TEMPLATE
    trainer = tiny_trainer(tmp_path, tok, _dataset(name), max_steps=1, per_device_train_batch_size=4,
                           descent_alpha=ALPHA, dual_lr=ETA, resilience_coef=beta, max_grad_norm=0.0,
                           **OPTIONS[name])  # fmt: skip
    lam = torch.tensor(LAMBDA, dtype=torch.float64)
    trainer.duals.multipliers = lam.clone()
    reference = copy.deepcopy(trainer.model).train()  # the weights of the step, before it
    spy = Spy(trainer)
    trainer.add_callback(spy)
    trainer.train()

    assert len(spy.inputs) == 1 and len(spy.losses) == 1  # one forward, one loss
    batch = {k: v.detach() for k, v in spy.inputs[0].items() if torch.is_tensor(v)}
    segments = _segments(batch)

    # the tokens the option selects, found independently of TRL's labels
    labelled = batch["labels"] != -100
    assert torch.equal(batch["labels"][labelled], batch["input_ids"][labelled])
    if name == "packing-wrapped":  # rows cut across examples: every row full, no position ids restart
        assert "position_ids" not in batch and len(segments) == batch["input_ids"].shape[0]
    else:
        masks = _expected_label_masks(tok, all_tokens=name == "completion_only_loss-false")
        for row, start, end in segments:
            key = tuple(batch["input_ids"][row, start:end].tolist())
            assert key in masks, "a sequence that is not one whole example"
            assert labelled[row, start:end].tolist() == masks[key]
    if name in ("packing-bfd", "padding_free"):  # one flattened row of several sequences, positions restarting
        assert batch["input_ids"].shape[0] == 1 and len(segments) >= 4
    if name == "completion_only_loss-false":
        assert labelled[0, 0]  # the prompt is trained on too
    elif name != "packing-wrapped":
        assert (~labelled).sum() > 0

    noise = None
    if name == "neftune":
        # what the first layer read, minus the clean embeddings: NEFTune's uniform noise of magnitude α / √(T·d)
        clean = reference.model.embed_tokens(batch["input_ids"]).detach()
        noise = spy.layer0_input[0] - clean
        magnitude = NEFTUNE_ALPHA / (batch["input_ids"].shape[1] * clean.shape[-1]) ** 0.5
        assert noise.abs().max() <= magnitude * (1 + 1e-5)
        assert noise.abs().max() > 0.9 * magnitude and noise.std() > 0.5 * magnitude / 3**0.5
    else:
        assert torch.equal(spy.layer0_input[0], reference.model.embed_tokens(batch["input_ids"]))

    ell = _naive_layer_losses(reference, batch, segments, noise)
    if name == "neftune":  # the noise changes every layer's loss: the naive reference could not ignore it
        clean_ell = _naive_layer_losses(reference, batch, segments).detach()
        assert torch.all((clean_ell - ell.detach()).abs() > 1e-3)
    lagrangian = ell[-1] + sum(LAMBDA[l - 1] * (ell[l] - (1 - ALPHA) * ell[l - 1].detach()) for l in range(1, 4))
    assert spy.losses[0].item() == pytest.approx(lagrangian.item(), abs=2e-5)
    lagrangian.backward()
    expected_grads = {n: p.grad for n, p in reference.named_parameters() if p.grad is not None}
    assert set(spy.grads) == set(expected_grads)
    for param, grad in expected_grads.items():
        torch.testing.assert_close(spy.grads[param], grad.float(), rtol=1e-3, atol=2e-6, msg=param)

    values = ell.detach()
    slack = values[1:] - (1 - ALPHA) * values[:-1]
    step = lam + ETA * slack
    if beta is not None:
        step = step / (1 + ETA / beta)
    torch.testing.assert_close(trainer.dual_variables.double(), step.clamp(min=0.0), rtol=1e-5, atol=2e-6)
    assert torch.all(trainer.dual_variables != torch.tensor(LAMBDA, dtype=torch.float32))  # λ moved
