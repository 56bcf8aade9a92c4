"""Sequence classifiers: per-layer losses through each architecture's head, and ConstrainedTrainer."""

import copy

import numpy as np
import pytest
import torch
import transformers
from datasets import Dataset
from transformers import TrainingArguments

from hf_cut import ConstrainedTrainer, ConstrainedTrainingArguments
from hf_cut.readout.sequence_head import ClassifierReadoutRequest, add_classifier_readout

VOCAB = 50


def tiny_classifier(arch: str, num_labels: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    common = dict(vocab_size=VOCAB, num_labels=num_labels, pad_token_id=0)
    if arch == "distilbert":
        config = transformers.DistilBertConfig(dim=32, hidden_dim=64, n_layers=3, n_heads=4, **common)
    else:
        cls = {"roberta": transformers.RobertaConfig, "bert": transformers.BertConfig}[arch]
        config = cls(hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, **common)
    return transformers.AutoModelForSequenceClassification.from_config(config).eval()


def _truncated(model, layers: int):
    """The same model with only its first `layers` layers: its own forward reads out h_layers (independent path)."""
    small = copy.deepcopy(model)
    small.__dict__.pop("forward", None)  # the class's own forward, not a patched one
    stack = small.distilbert.transformer if small.config.model_type == "distilbert" else small.base_model.encoder
    container = "layer"
    setattr(stack, container, torch.nn.ModuleList(list(getattr(stack, container))[:layers]))
    return small


def _inputs(pair: bool = False):
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(3, VOCAB, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0
    ids[1, 6:] = 0
    inputs = {"input_ids": ids, "attention_mask": mask}
    if pair:  # sentence-pair input: second segment gets token type 1
        types = torch.zeros_like(ids)
        types[:, 5:] = 1
        inputs["token_type_ids"] = types
    return inputs


@pytest.mark.parametrize("arch,pair", [("roberta", False), ("bert", False), ("bert", True), ("distilbert", False)])
def test_layer_losses_equal_truncated_models(arch, pair):
    model = tiny_classifier(arch)
    inputs = _inputs(pair)
    labels = torch.tensor([0, 2, 1, 1])
    expected = [_truncated(model, l)(**inputs, labels=labels).loss for l in range(4)]
    add_classifier_readout(model)
    out = model(**inputs, labels=labels, layer_readout=ClassifierReadoutRequest())
    assert torch.allclose(out.layer_losses, torch.stack(expected), atol=1e-5)


def test_regression_head_uses_mse():
    model = tiny_classifier("roberta", num_labels=1)
    inputs = _inputs()
    labels = torch.tensor([0.5, -1.0, 2.0, 0.0])
    predictions = [_truncated(model, layer)(**inputs).logits.squeeze(-1) for layer in range(4)]
    add_classifier_readout(model)
    out = model(**inputs, labels=labels, layer_readout=ClassifierReadoutRequest())
    for layer in range(4):
        assert out.layer_losses[layer].item() == pytest.approx(((predictions[layer] - labels) ** 2).mean().item(), abs=1e-5)


def test_unknown_head_rejected():
    model = tiny_classifier("bert")
    model.base_model.pooler = None
    with pytest.raises(ValueError, match="No shared readout"):
        add_classifier_readout(model)


def _dataset(n=48, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCAB, size=(n, 8))
    labels = (ids[:, 0] % 3).tolist()  # learnable: the first token decides the class
    return Dataset.from_dict({"input_ids": ids.tolist(), "attention_mask": np.ones_like(ids).tolist(), "labels": labels})


def _args(tmp_path, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"), use_cpu=True, per_device_train_batch_size=8, max_steps=4,
        learning_rate=1e-3, logging_steps=1, save_strategy="no", report_to=[], seed=0, dual_lr=0.5, resilience_coef=None,
        disable_tqdm=True,
    )  # fmt: skip
    values.update(overrides)
    return ConstrainedTrainingArguments(**values)


def test_trainer_loss_duals_logs_and_metrics(tmp_path):
    model = tiny_classifier("roberta")
    trainer = ConstrainedTrainer(
        model=model,
        args=_args(tmp_path),
        train_dataset=_dataset(),
        eval_dataset=_dataset(16, seed=1),
        compute_metrics=lambda p: {"accuracy": float((p.predictions.argmax(-1) == p.label_ids).mean())},
    )
    trainer.duals.multipliers = torch.tensor([0.2, 0.0, 0.5], dtype=torch.float64)
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.eval()  # no dropout: compare with the truncated models
    ell = [_truncated(trainer.model, l)(**batch).loss for l in range(4)]
    trainer.model.train()
    for module in trainer.model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    loss = trainer.compute_loss(trainer.model, batch)
    expected = ell[3] + 0.2 * (ell[1] - 0.9 * ell[0]) + 0.5 * (ell[3] - 0.9 * ell[2])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    trainer.duals = type(trainer.duals)(3, 0.1, 0.5)  # fresh λ = 0 for training
    trainer.train()
    logs = [h for h in trainer.state.log_history if "layer_loss/0" in h]
    assert len(logs) == 4 and {"dual/1", "slack/3", "constraint_satisfaction"} <= set(logs[-1])
    # λ by hand: projected ascent λ ← max(0, λ + 0.5 s) from λ = 0 (hard constraints), each step's slack
    # s_l = ℓ_l − 0.9 ℓ_{l−1} from that step's logged layer losses (one batch per step, one step per log)
    lam = [0.0, 0.0, 0.0]
    for log in logs:
        ell = [log[f"layer_loss/{l}"] for l in range(4)]
        slack = [ell[l] - 0.9 * ell[l - 1] for l in (1, 2, 3)]
        assert [log[f"slack/{l}"] for l in (1, 2, 3)] == pytest.approx(slack, abs=1e-9)
        lam = [max(0.0, lam[l] + 0.5 * slack[l]) for l in range(3)]
        assert [log[f"dual/{l}"] for l in (1, 2, 3)] == pytest.approx(lam, abs=1e-9)
    assert trainer.dual_variables.tolist() == pytest.approx(lam, rel=1e-6) and sum(lam) > 0  # float32
    metrics = trainer.evaluate()
    assert "eval_accuracy" in metrics and "eval_layer_loss/3" in metrics and "eval_dual/1" in metrics


def test_layer_loss_interval_off_steps_train_the_plain_loss(tmp_path):
    model = tiny_classifier("roberta")
    for module in model.modules():  # no dropout: the loss of a batch is a function of the weights
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    trainer = ConstrainedTrainer(model=model, args=_args(tmp_path, layer_loss_interval=3), train_dataset=_dataset())
    trainer.duals.multipliers = torch.tensor([0.2, 0.3, 0.5], dtype=torch.float64)
    trainer.model.train()
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    assert trainer.compute_loss(trainer.model, batch).item() != pytest.approx(trainer.model(**batch).loss.item())
    trainer.state.global_step = 1  # between two measured steps: the model's own loss, nothing accumulated
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(trainer.model(**batch).loss.item())
    trainer.duals = type(trainer.duals)(3, 0.1, 0.5)
    trainer.state.global_step = 0
    trainer.train()  # 4 steps: measured at 0 and 3
    assert [h["step"] for h in trainer.state.log_history if "layer_loss/0" in h] == [1, 4]


def test_plain_training_arguments_and_resume(tmp_path):
    args = TrainingArguments(output_dir=str(tmp_path / "x"), use_cpu=True, report_to=[])
    trainer = ConstrainedTrainer(model=tiny_classifier("bert"), args=args, train_dataset=_dataset())
    assert isinstance(trainer.args, ConstrainedTrainingArguments) and trainer.args.constrained

    opts = dict(max_steps=6, save_strategy="steps", save_steps=3, noise_gamma=0.3)
    full = ConstrainedTrainer(model=tiny_classifier("bert"), args=_args(tmp_path / "a", **opts), train_dataset=_dataset())
    full.train()
    checkpoint = tmp_path / "a" / "out" / "checkpoint-3"
    resumed = ConstrainedTrainer(
        model=tiny_classifier("bert"), args=_args(tmp_path / "b", **opts), train_dataset=_dataset()
    )
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert torch.allclose(full.dual_variables, resumed.dual_variables, atol=1e-6)
    for p, q in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6)
