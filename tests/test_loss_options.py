"""Every SFTConfig / TrainingArguments option that changes the loss or the batch: the trainer's loss equals TRL's
`SFTTrainer`'s on the same batch — plain ERM (`constrained=False`) and the constrained trainer at λ = 0 — or
construction refuses it by name. The table of options is in docs/method.md."""

from __future__ import annotations

import copy

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from hf_cut import ConstrainedSFTConfig, ConstrainedSFTTrainer, ConstrainedTrainer, ConstrainedTrainingArguments
from tests.conftest import make_rows, tiny_causal_lm

BASE = dict(use_cpu=True, bf16=False, per_device_train_batch_size=4, max_steps=2, report_to=[], seed=0,
            save_strategy="no", disable_tqdm=True, activation_checkpointing=False)  # fmt: skip
CONSTRAINED = dict(layer_loss_budget=None, layer_loss_interval=1, logging_steps=1)

# {% generation %} marks the assistant's tokens for `assistant_only_loss`
CHAT_TEMPLATE = ("{% for m in messages %}{% if m['role'] == 'assistant' %}{% generation %}{{ m['content'] }}"
                 "{{ eos_token }}{% endgeneration %}{% else %}{{ m['content'] }}{% endif %}{% endfor %}")  # fmt: skip


def conversations(n: int = 16) -> Dataset:
    rows = make_rows(n)
    return Dataset.from_list([{"messages": [{"role": "user", "content": r["prompt"]},
                                            {"role": "assistant", "content": r["completion"]}]} for r in rows])  # fmt: skip


def pair(tmp_path, tokenizer, options: dict, constrained: bool, dataset=None, dual_init: float = 0.0,
         **trainer_kwargs):  # fmt: skip
    """(SFTTrainer, ConstrainedSFTTrainer) over the same weights, data and options (λ = ``dual_init``, 0 unless
    given)."""
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    dataset = dataset if dataset is not None else Dataset.from_list(make_rows(16))
    plain = SFTTrainer(model=copy.deepcopy(model), args=SFTConfig(output_dir=str(tmp_path / "a"), **BASE, **options),
                       train_dataset=dataset, processing_class=tokenizer, **trainer_kwargs)  # fmt: skip
    args = ConstrainedSFTConfig(output_dir=str(tmp_path / "b"), constrained=constrained, dual_init=dual_init,
                                **BASE, **CONSTRAINED, **options)  # fmt: skip
    ours = ConstrainedSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer,
                                 **trainer_kwargs)  # fmt: skip
    return plain, ours


def loss_and_grad(trainer, batch, num_items_in_batch=None, neftune=False):
    """The training loss on ``batch`` and the LM head's gradient, in training mode, from a fixed RNG state."""
    model = trainer.model
    model.train()
    if neftune:  # as Trainer.train() does
        from transformers.integrations.neftune import activate_neftune

        activate_neftune(model, trainer.args.neftune_noise_alpha, trainer.accelerator)
    model.zero_grad()
    torch.manual_seed(0)
    loss = trainer.compute_loss(model, trainer._prepare_inputs(dict(batch)), num_items_in_batch=num_items_in_batch)
    loss.backward()
    return loss.detach(), model.get_output_embeddings().weight.grad.clone()


def first_batch(trainer):
    return next(iter(trainer.get_train_dataloader()))


def assert_same_loss(plain, ours, num_items_in_batch=None, neftune=False):
    batch = first_batch(plain)
    for key, value in first_batch(ours).items():  # the same collator output (the same batch)
        assert torch.equal(value, batch[key]) if torch.is_tensor(value) else value == batch[key], key
    loss_a, grad_a = loss_and_grad(plain, batch, num_items_in_batch, neftune)
    loss_b, grad_b = loss_and_grad(ours, batch, num_items_in_batch, neftune)
    assert torch.isfinite(loss_a) and loss_a > 0
    torch.testing.assert_close(loss_b, loss_a, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(grad_b, grad_a, rtol=1e-4, atol=1e-6)


HONOURED = {
    "loss_type nll": dict(loss_type="nll"),
    "loss_type dft": dict(loss_type="dft"),
    "completion_only_loss true": dict(completion_only_loss=True),
    "completion_only_loss false": dict(completion_only_loss=False),
    "packing bfd": dict(packing=True, packing_strategy="bfd", max_length=32),
    "packing wrapped": dict(packing=True, packing_strategy="wrapped", max_length=32),
    "padding_free": dict(padding_free=True, max_length=None),
    "average_tokens_across_devices": dict(average_tokens_across_devices=True),
}


@pytest.mark.parametrize("constrained", [False, True], ids=["ERM", "constrained-lambda0"])
@pytest.mark.parametrize("name", list(HONOURED))
def test_option_gives_sft_trainers_loss(tmp_path, tokenizer, name, constrained):
    plain, ours = pair(tmp_path, tokenizer, HONOURED[name], constrained)
    assert_same_loss(plain, ours)


@pytest.mark.parametrize("constrained", [False, True], ids=["ERM", "constrained-lambda0"])
def test_gradient_accumulation_normaliser(tmp_path, tokenizer, constrained):
    """`num_items_in_batch` (the tokens of every micro-batch of the step): the loss is divided by it, as TRL's."""
    plain, ours = pair(tmp_path, tokenizer, {}, constrained)
    assert_same_loss(plain, ours, num_items_in_batch=torch.tensor(97))


@pytest.mark.parametrize("constrained", [False, True], ids=["ERM", "constrained-lambda0"])
def test_neftune(tmp_path, tokenizer, constrained):
    """NEFTune's noise acts on the embeddings the layerwise pass reads: the same draw gives the same loss."""
    plain, ours = pair(tmp_path, tokenizer, dict(neftune_noise_alpha=5.0), constrained)
    assert_same_loss(plain, ours, neftune=True)


@pytest.mark.parametrize("constrained", [False, True], ids=["ERM", "constrained-lambda0"])
def test_assistant_only_loss(tmp_path, tokenizer, constrained):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    plain, ours = pair(tmp_path, tok, dict(assistant_only_loss=True), constrained, dataset=conversations())
    batch = first_batch(ours)
    assert 0 < (batch["labels"] != -100).sum() < batch["attention_mask"].sum()  # only the assistant's tokens
    assert_same_loss(plain, ours)


@pytest.mark.parametrize("options", [dict(label_smoothing_factor=0.1), {}], ids=["label_smoothing", "compute_loss_func"])
def test_erm_uses_sft_trainers_own_loss(tmp_path, tokenizer, options):
    """Label smoothing and a `compute_loss_func` need the full logits: plain ERM gets SFTTrainer's own loss (on the
    steps that log the layer losses too), the constrained trainer refuses them by name."""
    func = None if options else (lambda outputs, labels, num_items_in_batch=None: outputs.logits.square().mean())
    kwargs = {} if options else {"compute_loss_func": func}
    plain, ours = pair(tmp_path, tokenizer, options, constrained=False, **kwargs)
    ours.state.logging_steps = 1
    ours.model.train()
    assert ours._measures_layers()  # a logged step: the layers are scored too
    assert_same_loss(plain, ours)
    assert ours.layer_metrics.values["train"]["layer_loss/0"]
    name = "label_smoothing_factor" if options else "compute_loss_func"
    for extra in (dict(constrained=True), dict(constrained=False, deep_supervision_weight=1.0)):
        args = ConstrainedSFTConfig(output_dir=str(tmp_path / "c"), **BASE, **CONSTRAINED, **options, **extra)
        with pytest.raises(ValueError, match=name):
            ConstrainedSFTTrainer(model="unused: refused before the model is loaded", args=args,
                                  train_dataset=Dataset.from_list(make_rows(4)), **kwargs)  # fmt: skip


def test_liger_is_refused(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="use_liger_kernel"):
        pair(tmp_path, tokenizer, dict(use_liger_kernel=True), constrained=True)
    with pytest.raises(ValueError, match="use_liger_kernel"):
        ConstrainedTrainer(model=tiny_causal_lm(), args=ConstrainedTrainingArguments(
            output_dir=str(tmp_path), use_cpu=True, use_liger_kernel=True, report_to=[]))  # fmt: skip


def test_dft_layer_terms_against_full_logits(tmp_path, tokenizer):
    """With `loss_type="dft"` every layer's loss is DFT's, −log p · sg(p) averaged over the completion tokens: the
    Lagrangian at λ = 0.5 recomputed from each layer's full logits (final norm, then the head) by hand."""
    _, ours = pair(tmp_path, tokenizer, dict(loss_type="dft"), constrained=True, dual_init=0.5)
    batch = ours._prepare_inputs(dict(first_batch(ours)))
    model = ours.model.train()
    loss = ours.compute_loss(model, batch)
    with torch.no_grad():
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        states = [model.model.norm(h) for h in out.hidden_states[:-1]] + [out.hidden_states[-1]]
        losses = []
        for h in states:
            logp = torch.log_softmax(model.lm_head(h[:, :-1]).double(), -1)
            lp = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0][mask]
            losses.append((-lp * lp.exp()).mean())
        losses = torch.stack(losses)
        expected = losses[-1] + 0.5 * (losses[1:] - 0.9 * losses[:-1]).sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-4, atol=1e-5)
