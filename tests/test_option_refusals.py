"""Options that hf-cut refuses, aliases, or hands to the parent trainer — checked against docs/method.md's table
("TRL and Trainer options that change the loss or the batch") with numbers computed here by hand.

- ``router_aux_loss_coef`` (MoE): refused by name whenever the auxiliary loss would be on (the model config's own
  coefficient included); at 0.0 the trainer runs and its loss is the Lagrangian of the plain layer NLLs (no aux term).
- ``loss_type="chunked_nll"``: TRL's deprecated alias of ``"nll"``: the same layer losses and training loss as
  ``"nll"``, both equal to naive full-logits NLLs (and not to ``"dft"``'s).
- ``label_smoothing_factor`` and ``compute_loss_func`` on ``ConstrainedTrainer`` (classifiers): refused with
  ``constrained=True`` or deep supervision; for plain ERM the loss is ``Trainer``'s own (smoothed cross-entropy,
  or the function's value), and every layer is scored (unsmoothed, the model's own loss) for the logs.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import transformers
from datasets import Dataset
from trl import SFTConfig

from hf_cut import ConstrainedSFTTrainer, ConstrainedTrainer, ConstrainedTrainingArguments
from tests.conftest import make_rows, tiny_causal_lm, train_args

LAMBDA = [0.3, 0.6]
CLASSIFIER_VOCAB = 50


def tiny_classifier():
    """A 3-layer, 3-class RoBERTa classifier (random init)."""
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=CLASSIFIER_VOCAB, num_labels=3, pad_token_id=0, hidden_size=32,
                                        intermediate_size=64, num_hidden_layers=3, num_attention_heads=4)  # fmt: skip
    return transformers.AutoModelForSequenceClassification.from_config(config).eval()


def _truncated(model, layers: int):
    """The same classifier with its first ``layers`` layers only: its own forward reads out h_layers (no hf-cut)."""
    small = copy.deepcopy(model)
    small.__dict__.pop("forward", None)  # the class's own forward, not a patched one
    small.roberta.encoder.layer = torch.nn.ModuleList(list(small.roberta.encoder.layer)[:layers])
    return small


def classifier_dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, CLASSIFIER_VOCAB, size=(n, 8))
    labels = (ids[:, 0] % 3).tolist()
    mask = np.ones_like(ids).tolist()
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": mask, "labels": labels})


def classifier_args(tmp_path, **overrides):
    values = dict(output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=8, max_steps=4,
                  learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], seed=0, dual_lr=0.5,
                  resilience_coef=None, disable_tqdm=True)  # fmt: skip
    values.update(overrides)
    return ConstrainedTrainingArguments(**values)


def _naive_nll(model, batch, loss_type="nll"):
    """[L + 1] ℓ_l over the label tokens from full logits: the model's ``norm`` (the last state is already normalised),
    ``lm_head``, float64 log-softmax; ``"dft"``: −log p · p."""
    with torch.no_grad():
        states = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                             output_hidden_states=True).hidden_states  # fmt: skip
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        L = len(states) - 1
        out = []
        for layer, h in enumerate(states):
            logp = torch.log_softmax(model.lm_head(h if layer == L else model.model.norm(h))[:, :-1].double(), -1)
            lp = logp.gather(-1, labels.clamp(min=0)[..., None])[..., 0][mask]
            out.append((-lp * lp.exp()).mean() if loss_type == "dft" else -lp.mean())
    return torch.stack(out)


def _lagrangian(ell, lam, alpha):
    return ell[-1] + sum(lam[l - 1] * (ell[l] - (1 - alpha) * ell[l - 1]) for l in range(1, len(ell)))


# --- router_aux_loss_coef ---


def _moe(tokenizer, coef=0.02):
    config = transformers.MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, num_local_experts=4, num_experts_per_tok=2, output_router_logits=True,
        router_aux_loss_coef=coef, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.AutoModelForCausalLM.from_config(config)


@pytest.mark.parametrize("coef", [None, 0.5], ids=["model-config-coef", "explicit"])
def test_router_aux_loss_coef_is_refused_by_name(tmp_path, tokenizer, coef):
    """``None`` leaves the coefficient to the model's config (0.02 here): the aux loss is on, so refused as well."""
    args = train_args(tmp_path, router_aux_loss_coef=coef)
    with pytest.raises(ValueError, match="router_aux_loss_coef"):
        ConstrainedSFTTrainer(model=_moe(tokenizer), args=args, train_dataset=Dataset.from_list(make_rows(8)),
                              processing_class=tokenizer)  # fmt: skip


def test_router_aux_loss_coef_zero_trains_the_plain_lagrangian(tmp_path, tokenizer):
    model = _moe(tokenizer)
    args = train_args(tmp_path, router_aux_loss_coef=0.0, descent_alpha=0.2)
    trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(make_rows(8)),
                                    processing_class=tokenizer)  # fmt: skip
    trainer.duals.multipliers = torch.tensor(LAMBDA, dtype=torch.float64)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    ell = _naive_nll(trainer.model, batch)
    assert loss.item() == pytest.approx(_lagrangian(ell, LAMBDA, 0.2).item(), abs=2e-5)  # no aux term
    assert trainer.layer_metrics.values["train"]["layer_loss/0"][-1] == pytest.approx(ell[0].item(), abs=2e-5)


# --- loss_type="chunked_nll" ---


def _sft_trainer(tmp_path, tokenizer, args):
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                           eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    data = Dataset.from_list(make_rows(8))
    return ConstrainedSFTTrainer(model=model, args=args, train_dataset=data, eval_dataset=data,
                                 processing_class=tokenizer)  # fmt: skip


def _layer_terms(trainer):
    """(first batch, training loss at λ from a fixed RNG state, eval layer losses, eval loss)."""
    trainer.duals.multipliers = torch.tensor([0.3, 0.6, 0.2], dtype=torch.float64)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    torch.manual_seed(0)  # the same token / layer sample, where the configuration samples
    loss = trainer.compute_loss(trainer.model, dict(batch)).item()
    metrics = trainer.evaluate()
    return batch, loss, [metrics[f"eval_layer_loss/{l}"] for l in range(4)], metrics["eval_loss"]


def _config(kind, path, loss_type):
    batches = dict(per_device_train_batch_size=8, per_device_eval_batch_size=8)
    if kind == "ConstrainedSFTConfig":  # every layer on every token: the training loss is the plain Lagrangian
        return train_args(path, loss_type=loss_type, descent_alpha=0.2, **batches)
    # a plain SFTConfig: the trainer adds the constraint options at their defaults (token and layer sampling)
    return SFTConfig(output_dir=str(path), use_cpu=True, bf16=False, report_to=[], seed=0,
                     activation_checkpointing=False, loss_type=loss_type, **batches)  # fmt: skip


@pytest.mark.parametrize("kind", ["ConstrainedSFTConfig", "SFTConfig"])
def test_chunked_nll_is_nll(tmp_path, tokenizer, kind):
    with pytest.warns(FutureWarning, match="chunked_nll"):  # TRL's deprecation of the alias
        alias = _config(kind, tmp_path / "alias", "chunked_nll")
    aliased = _sft_trainer(tmp_path, tokenizer, alias)
    batch, loss, layer_losses, eval_loss = _layer_terms(aliased)
    _, nll_loss, nll_layers, nll_eval_loss = _layer_terms(
        _sft_trainer(tmp_path, tokenizer, _config(kind, tmp_path / "nll", "nll")))
    _, dft_loss, dft_layers, _ = _layer_terms(_sft_trainer(tmp_path, tokenizer, _config(kind, tmp_path / "dft", "dft")))

    assert loss == pytest.approx(nll_loss, abs=1e-6)
    assert layer_losses == pytest.approx(nll_layers, abs=1e-6) and eval_loss == pytest.approx(nll_eval_loss, abs=1e-6)
    # both are the naive NLL's (evaluation scores every token at every layer), not DFT's
    model = aliased.model
    eval_batch = aliased._prepare_inputs(next(iter(aliased.get_eval_dataloader())))
    assert layer_losses == pytest.approx(_naive_nll(model, eval_batch).tolist(), abs=2e-5)
    assert layer_losses != pytest.approx(dft_layers, abs=1e-2) and loss != pytest.approx(dft_loss, abs=1e-2)
    if kind == "ConstrainedSFTConfig":
        assert loss == pytest.approx(_lagrangian(_naive_nll(model, batch), [0.3, 0.6, 0.2], 0.2).item(), abs=2e-5)


# --- label_smoothing_factor and compute_loss_func on ConstrainedTrainer ---


def _confident(model):
    """No dropout (the loss of a batch is a function of the weights), and a head scaled up so that the logits are far
    from uniform: smoothing then changes the loss (at uniform logits it would not)."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    with torch.no_grad():
        model.classifier.out_proj.weight.mul_(40.0)
    return model


def _loss_func(outputs, labels, num_items_in_batch=None):
    """A loss of the logits that is not the model's own: 2·CE + mean(logits²)."""
    return 2.0 * F.cross_entropy(outputs.logits, labels) + outputs.logits.square().mean()


OPTIONS = {"label_smoothing_factor": dict(label_smoothing_factor=0.1), "compute_loss_func": {}}


@pytest.mark.parametrize("name", list(OPTIONS))
@pytest.mark.parametrize("extra", [dict(constrained=True), dict(constrained=False, deep_supervision_weight=0.5)],
                         ids=["constrained", "deep-supervision"])  # fmt: skip
def test_classifier_trainer_refuses_with_layer_terms(tmp_path, name, extra):
    kwargs = {"compute_loss_func": _loss_func} if name == "compute_loss_func" else {}
    args = classifier_args(tmp_path, **OPTIONS[name], **extra)
    with pytest.raises(ValueError, match=name):
        ConstrainedTrainer(model=tiny_classifier(), args=args, train_dataset=classifier_dataset(), **kwargs)


def _naive_classifier(model, batch, name):
    """(the parent's loss, [L + 1] unsmoothed layer losses) from the model's own forward and its truncations."""
    with torch.no_grad():
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        logits = model(**inputs).logits
        labels = batch["labels"]
        if name == "label_smoothing_factor":
            parent = F.cross_entropy(logits, labels, label_smoothing=0.1)
        else:
            parent = 2.0 * F.cross_entropy(logits, labels) + logits.square().mean()
        layers = [F.cross_entropy(_truncated(model, l)(**inputs).logits, labels) for l in range(4)]
    return parent, torch.stack(layers)


@pytest.mark.parametrize("measured", [False, True], ids=["unlogged-step", "logged-step"])
@pytest.mark.parametrize("name", list(OPTIONS))
def test_classifier_erm_uses_the_parents_loss(tmp_path, name, measured):
    """Plain ERM: the training loss is Trainer's own — ``F.cross_entropy(..., label_smoothing=0.1)`` or the
    ``compute_loss_func`` — on every step; on a logged step (``logging_steps=1``) every layer is also scored, without
    smoothing, for ``layer_loss/{l}``; ``evaluate()`` gives the parent's loss and the layer losses.

    KNOWN BUG (hf-cut, reported): on a logged step and in ``evaluate()``, ``ConstrainedTrainer.compute_loss`` first
    calls ``Trainer.compute_loss``, which *pops* ``labels`` from the inputs dict when a label smoother or a
    ``compute_loss_func`` is set, then calls the model again with those inputs for the layer losses: the readout
    fails with ``KeyError: 'labels'`` (hf_cut/trainer.py, ``_loss_is_parents`` branch). The ``logged-step`` cases
    fail until it is fixed (e.g. pass ``dict(inputs)`` to ``super().compute_loss``)."""
    kwargs = {"compute_loss_func": _loss_func} if name == "compute_loss_func" else {}
    args = classifier_args(tmp_path, constrained=False, logging_steps=1 if measured else 10, **OPTIONS[name])
    trainer = ConstrainedTrainer(model=_confident(tiny_classifier()), args=args,
                                 train_dataset=classifier_dataset(), eval_dataset=classifier_dataset(8, seed=1),
                                 **kwargs)  # fmt: skip
    trainer.state.logging_steps = args.logging_steps  # as train() sets it
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    parent, layers = _naive_classifier(trainer.model, batch, name)
    assert abs(parent.item() - layers[-1].item()) > 1e-3  # the parent's loss is not the plain cross-entropy
    trainer.model.train()
    assert trainer._measures_layers() == measured
    loss = trainer.compute_loss(trainer.model, dict(batch))
    assert loss.item() == pytest.approx(parent.item(), abs=1e-5)
    window = trainer.layer_metrics.values["train"]
    if not measured:
        assert not window.get("layer_loss/0")
        return
    assert [window[f"layer_loss/{l}"][-1] for l in range(4)] == pytest.approx(layers.tolist(), abs=1e-5)
    assert torch.equal(trainer.dual_variables, torch.zeros(3))

    metrics = trainer.evaluate()
    eval_batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    eval_parent, eval_layers = _naive_classifier(trainer.model, eval_batch, name)
    assert metrics["eval_loss"] == pytest.approx(eval_parent.item(), abs=1e-5)
    assert [metrics[f"eval_layer_loss/{l}"] for l in range(4)] == pytest.approx(eval_layers.tolist(), abs=1e-5)


def test_sft_erm_label_smoothing_is_the_smoothed_nll(tmp_path, tokenizer):
    """The causal-LM side of the same row: plain ERM with ``label_smoothing_factor=0.1`` trains the smoothed
    cross-entropy over the completion tokens, computed here from the model's logits with
    ``F.cross_entropy(label_smoothing=0.1)``; the layer losses logged on that step are the unsmoothed NLLs."""
    args = train_args(tmp_path, constrained=False, label_smoothing_factor=0.1, per_device_train_batch_size=8)
    trainer = _sft_trainer(tmp_path, tokenizer, args)
    trainer.state.logging_steps = args.logging_steps  # 1, as train() sets it: this step is logged
    with torch.no_grad():  # logits far from uniform, so that smoothing matters
        trainer.model.lm_head.weight.mul_(30.0)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    assert trainer._measures_layers()
    loss = trainer.compute_loss(trainer.model, dict(batch))
    with torch.no_grad():
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        flat_logits, targets = logits[:, :-1].reshape(-1, logits.shape[-1]).double(), batch["labels"][:, 1:].reshape(-1)
        smoothed = F.cross_entropy(flat_logits, targets, ignore_index=-100, label_smoothing=0.1)
    ell = _naive_nll(trainer.model, batch)
    assert loss.item() == pytest.approx(smoothed.item(), abs=2e-5)
    assert abs(smoothed.item() - ell[-1].item()) > 1e-3
    window = trainer.layer_metrics.values["train"]
    assert [window[f"layer_loss/{l}"][-1] for l in range(4)] == pytest.approx(ell.tolist(), abs=2e-5)
