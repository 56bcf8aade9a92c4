"""ConstrainedSFTTrainer: the loss, the duals, gradient accumulation, resume, bad input, the model card."""


import pytest
import torch
from datasets import Dataset
from trl import SFTConfig

from hf_cut import ConstrainedSFTConfig, ConstrainedSFTTrainer
from tests.conftest import tiny_causal_lm, tiny_trainer, train_args


def _naive_layer_losses(trainer, batch):
    """ℓ_0 … ℓ_L of a batch from full logits (independent of the readout code)."""
    model = trainer.model
    out = model.base_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    labels = batch["labels"][:, 1:]
    losses = []
    for layer, h in enumerate(out.hidden_states):
        h = h if layer == len(out.hidden_states) - 1 else model.model.norm(h)
        logits = model.lm_head(h)[:, :-1]
        losses.append(torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100))
    return torch.stack(losses)


def _first_batch(trainer):
    return trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))


def test_training_loss_is_the_lagrangian(tmp_path, tokenizer, dataset):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, descent_alpha=0.2)
    trainer.duals.multipliers = torch.tensor([0.3, 0.0, 0.7], dtype=torch.float64)
    trainer.model.train()
    batch = _first_batch(trainer)
    loss = trainer.compute_loss(trainer.model, batch)
    ell = _naive_layer_losses(trainer, batch)
    expected = ell[3] + 0.3 * (ell[1] - 0.8 * ell[0]) + 0.7 * (ell[3] - 0.8 * ell[2])
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_deep_supervision_and_erm_losses(tmp_path, tokenizer, dataset):
    for weight in (0.0, 0.5):
        trainer = tiny_trainer(tmp_path, tokenizer, dataset, constrained=False, deep_supervision_weight=weight)
        trainer.model.train()
        batch = _first_batch(trainer)
        ell = _naive_layer_losses(trainer, batch)
        expected = ell[3] + weight * ell[1:3].mean()  # intermediate layers 1 … L−1
        assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), abs=1e-5)


def test_duals_grow_under_violation_and_stay_zero_for_erm(tmp_path, tokenizer, dataset):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=4)
    trainer.train()
    # A random model barely changes the loss from layer to layer (ratio ≈ 1 > 1 − α): every constraint is violated
    assert torch.all(trainer.dual_variables > 0)
    logs = [h for h in trainer.state.log_history if "layer_loss/0" in h]
    assert len(logs) == 4
    for key in ["layer_loss/0", "layer_loss/3", "dual/1", "dual/3", "slack/1", "slack/3"]:
        assert key in logs[-1]
    # the share of constraints met and the mean descent ratio of each step, by hand from that step's logged layer
    # losses (one micro-batch per step, one step per log): s_l = ℓ_l − 0.9 ℓ_{l−1} ≤ 0, ratio ℓ_l / ℓ_{l−1} (the logged
    # ℓ_L is recomputed on every token in float32: 1e-6)
    for log in logs:
        ell = [log[f"layer_loss/{l}"] for l in range(4)]
        met = [ell[l] - 0.9 * ell[l - 1] <= 0 for l in (1, 2, 3)]
        assert log["constraint_satisfaction"] == sum(met) / 3
        assert log["descent_ratio_mean"] == pytest.approx(sum(ell[l] / ell[l - 1] for l in (1, 2, 3)) / 3, rel=1e-6)
    # a random model: ratio ≈ 1 > 0.9 at every layer and step, so no constraint is met
    assert [log["constraint_satisfaction"] for log in logs] == [0.0, 0.0, 0.0, 0.0]
    # and λ after each step is the projected ascent λ ← max(0, λ + 0.5 s) from λ = 0 on those hand-made slacks
    lam = [0.0, 0.0, 0.0]
    for log in logs:
        ell = [log[f"layer_loss/{l}"] for l in range(4)]
        lam = [max(0.0, lam[l - 1] + 0.5 * (ell[l] - 0.9 * ell[l - 1])) for l in (1, 2, 3)]
        assert [log[f"dual/{l}"] for l in (1, 2, 3)] == pytest.approx(lam, abs=1e-6)
    # the logged dual equals λ after the last step
    assert logs[-1]["dual/2"] == pytest.approx(trainer.dual_variables[1].item(), rel=1e-6)

    erm = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=4, constrained=False)
    erm.train()
    assert torch.equal(erm.dual_variables, torch.zeros(3))
    assert "layer_loss/1" in [h for h in erm.state.log_history if "layer_loss/1" in h][-1]


def test_dual_step_uses_the_step_slack(tmp_path, tokenizer, dataset):
    # One step at lr 0: the model does not move, so the step's slack is that of the naive layer losses of its batch
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=1, learning_rate=0.0, dual_lr=0.5)
    batch = _first_batch(trainer)
    trainer.model.train()
    with torch.no_grad():
        ell = _naive_layer_losses(trainer, batch)
    trainer.train()
    expected = torch.clamp(0.5 * (ell[1:] - 0.9 * ell[:-1]), min=0)
    assert torch.allclose(trainer.dual_variables, expected, atol=1e-5)


def test_layer_loss_interval_measures_every_kth_step(tmp_path, tokenizer, dataset):
    # lr 0: the model never moves, so each measured step's slack is that of the naive layer losses of its batch
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=4, learning_rate=0.0, dual_lr=0.5, layer_loss_interval=2)
    loader = iter(trainer.get_train_dataloader())
    batches = [trainer._prepare_inputs(next(loader)) for _ in range(4)]
    trainer.model.train()
    with torch.no_grad():
        ell = [_naive_layer_losses(trainer, b) for b in batches]
    trainer.train()
    # steps 0 and 2 are measured; each dual step stands for K / D = 2 optimizer steps
    lam = torch.clamp(2 * 0.5 * (ell[0][1:] - 0.9 * ell[0][:-1]), min=0)
    lam = torch.clamp(lam + 2 * 0.5 * (ell[2][1:] - 0.9 * ell[2][:-1]), min=0)
    assert torch.allclose(trainer.dual_variables, lam, atol=1e-5)
    measured = [h["step"] for h in trainer.state.log_history if "layer_loss/0" in h]
    assert measured == [1, 3]  # logged after the optimizer steps 0 and 2
    # the steps in between train ℓ_L alone: their logged loss is the naive last-layer loss
    losses = {h["step"]: h["loss"] for h in trainer.state.log_history if "loss" in h}
    assert losses[2] == pytest.approx(ell[1][-1].item(), abs=1e-4)
    assert losses[4] == pytest.approx(ell[3][-1].item(), abs=1e-4)


def _params(trainer):
    return torch.cat([p.detach().flatten() for p in trainer.model.parameters()])


def test_gradient_accumulation_matches_one_large_batch(tmp_path, tokenizer, dataset):
    big = tiny_trainer(tmp_path / "a", tokenizer, dataset, per_device_train_batch_size=4, max_steps=3)
    big.train()
    small = tiny_trainer(
        tmp_path / "b", tokenizer, dataset, per_device_train_batch_size=1, gradient_accumulation_steps=4, max_steps=3
    )
    small.train()
    assert torch.allclose(big.dual_variables, small.dual_variables, atol=1e-5)
    assert torch.allclose(_params(big), _params(small), atol=1e-5)


@pytest.mark.parametrize("interval", [1, 2])
def test_resume_from_checkpoint_is_exact(tmp_path, tokenizer, dataset, interval):
    opts = dict(max_steps=6, save_strategy="steps", save_steps=3, noise_gamma=0.5, layer_loss_token_fraction=0.5)
    opts["layer_loss_interval"] = interval  # 2: the checkpoint falls between two measured steps
    full = tiny_trainer(tmp_path / "full", tokenizer, dataset, **opts)
    full.train()
    checkpoint = tmp_path / "full" / "out" / "checkpoint-3"
    assert (checkpoint / "dual_variables.pt").is_file()
    saved = torch.load(checkpoint / "dual_variables.pt", weights_only=True)
    assert torch.all(saved["multipliers"] > 0)
    resumed = tiny_trainer(tmp_path / "resumed", tokenizer, dataset, **opts)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert torch.allclose(full.dual_variables, resumed.dual_variables, atol=1e-6)
    assert torch.allclose(_params(full), _params(resumed), atol=1e-6)


BAD_OPTIONS = [
    ("descent_alpha", 0.0),
    ("descent_alpha", 1.0),
    ("descent_alpha", -0.3),
    ("dual_lr", 0.0),
    ("dual_lr", -1.0),
    ("dual_update_interval", 0),
    ("dual_init", -0.1),
    ("resilience_coef", 0.0),
    ("noise_gamma", -0.5),
    ("noise_mean", float("nan")),
    ("layer_loss_token_fraction", 0.0),
    ("layer_loss_token_fraction", 1.5),
    ("deep_supervision_weight", -1.0),
    ("layer_loss_interval", 0),
    ("layer_loss_interval", 1.5),
]


@pytest.mark.parametrize("name,value", BAD_OPTIONS)
def test_bad_option_rejected_with_its_name(tmp_path, name, value):
    with pytest.raises(ValueError, match=f"`{name}`"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), use_cpu=True, **{name: value})


def test_any_dual_lr_is_accepted_with_any_resilience(tmp_path):
    """The implicit resilient step is stable for every η_d > 0: η_d > β (refused by an earlier release) is accepted
    again, like η_d = β and hard constraints (None, inf)."""
    for beta in (0.1, 0.5, "auto", None, float("inf")):
        ConstrainedSFTConfig(output_dir=str(tmp_path), use_cpu=True, dual_lr=0.5, resilience_coef=beta)


def test_resilience_auto_is_one_over_depth(tmp_path, tokenizer, dataset):
    """The default β = 1/L, resolved when the trainer knows L (3 layers here): a dual step of the relaxed rule by hand."""
    from hf_cut.config import normalise_resilience

    assert ConstrainedSFTConfig(output_dir=str(tmp_path), use_cpu=True).resilience_coef == "auto"
    assert [normalise_resilience(v) for v in ("auto", "None", "hard", "inf", float("inf"), "0.25", 2)] == [
        "auto", None, None, None, None, 0.25, 2.0]  # fmt: skip
    with pytest.raises(ValueError, match="`resilience_coef` must be 'auto', None"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), use_cpu=True, resilience_coef="soft")
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=2, learning_rate=0.0, dual_lr=0.2,
                           resilience_coef="auto")  # fmt: skip
    assert trainer.duals.resilience_coef == pytest.approx(1 / 3)
    seen = []
    accumulate = trainer.duals.accumulate
    trainer.duals.accumulate = lambda losses, n: seen.append(losses.detach().double().clone()) or accumulate(losses, n)
    trainer.train()
    lam = torch.zeros(3, dtype=torch.float64)
    for losses in seen:  # λ ← [(λ + η s) / (1 + η/β)]₊ with β = 1/3
        lam = torch.clamp((lam + 0.2 * (losses[1:] - 0.9 * losses[:-1])) / (1 + 0.2 * 3.0), min=0)
    assert len(seen) == 2 and torch.allclose(trainer.dual_variables.double(), lam, atol=1e-6)


def test_dual_lr_above_one_over_depth_trains(tmp_path, tokenizer, dataset):
    """η_d = 0.5 > β = 1/L (L = 3): trains, and λ follows the implicit resilient step recomputed by hand from the
    layer losses each step handed to the duals, λ ← max(0, (λ + η_d ŝ) / (1 + η_d/β)), ŝ_l = ℓ_l − 0.9 ℓ_{l−1}."""
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=12, dual_lr=0.5, resilience_coef="auto")
    seen = []
    accumulate = trainer.duals.accumulate
    trainer.duals.accumulate = lambda losses, count: seen.append(losses.detach().double().clone()) or accumulate(
        losses, count
    )
    trainer.train()
    assert len(seen) == 12  # one micro-batch a step: each step's slack is its own batch's
    lam = torch.zeros(3, dtype=torch.float64)
    for losses in seen:
        slack = losses[1:] - 0.9 * losses[:-1]
        lam = torch.clamp((lam + 0.5 * slack) / (1 + 0.5 / (1 / 3)), min=0)
    assert (lam > 0).any()
    assert torch.allclose(trainer.dual_variables.double(), lam, atol=1e-5)


def test_deep_supervision_needs_unconstrained(tmp_path):
    with pytest.raises(ValueError, match="deep_supervision_weight"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), use_cpu=True, deep_supervision_weight=0.5)


def test_dataset_without_trainable_tokens_rejected(tmp_path, tokenizer):
    rows = [{"prompt": "the cat sat on the mat", "completion": " dog"}] * 8
    with pytest.raises(ValueError, match="train_dataset"):
        tiny_trainer(tmp_path, tokenizer, Dataset.from_list(rows), max_length=3)


def test_plain_sft_config_is_accepted(tmp_path, tokenizer, dataset):
    args = SFTConfig(output_dir=str(tmp_path), use_cpu=True, bf16=False, learning_rate=3e-4, report_to=[],
                     activation_checkpointing=False)  # TRL's default sets the deprecated gradient_checkpointing
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=tokenizer)
    assert isinstance(trainer.args, ConstrainedSFTConfig)
    assert trainer.args.learning_rate == 3e-4 and trainer.args.constrained


def test_model_card_records_constraints(tmp_path, tokenizer, dataset):
    # TRL writes the card with every checkpoint
    trainer = tiny_trainer(
        tmp_path, tokenizer, dataset, max_steps=2, descent_alpha=0.15, save_strategy="steps", save_steps=2
    )
    trainer.train()
    card = (tmp_path / "out" / "README.md").read_text()
    assert "hf-cut" in card and "2601.17257" in card
    assert "| descent_alpha (α) | 0.15 |" in card
    # the layer table, row by row: layer l, its last logged training loss, λ_l (none for the embeddings' row 0)
    lines = card[card.index("| layer l |") :].splitlines()
    assert lines[0] == "| layer l | train loss ℓ_l | dual λ_l |"
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:6]]
    logged = [h for h in trainer.state.log_history if "layer_loss/0" in h][-1]
    duals = trainer.dual_variables.tolist()
    assert all(torch.tensor(d) > 0 for d in duals)
    for l, (layer, loss, dual) in enumerate(rows):
        assert layer == str(l) and loss == f"{logged[f'layer_loss/{l}']:.4f}"
        assert dual == ("–" if l == 0 else f"{duals[l - 1]:.4f}")


def test_model_by_path_with_lora(tmp_path, tokenizer, dataset):
    from peft import LoraConfig

    path = tmp_path / "tiny-llama"
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(path)
    tokenizer.save_pretrained(path)
    args = train_args(tmp_path, max_steps=3, learning_rate=1e-2)
    trainer = ConstrainedSFTTrainer(
        model=str(path),
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert torch.all(trainer.dual_variables > 0)
    # what push_to_hub uploads: the adapter alone, with the card; it reloads onto the base with plain PEFT
    from peft import AutoPeftModelForCausalLM

    saved = tmp_path / "adapter"
    trainer.save_model(str(saved))
    trainer.create_model_card()
    assert (saved / "adapter_model.safetensors").is_file() and not (saved / "model.safetensors").is_file()
    assert "dual λ_l" in (tmp_path / "out" / "README.md").read_text()
    reloaded = AutoPeftModelForCausalLM.from_pretrained(saved)
    trained = {n: p for n, p in trainer.model.named_parameters() if "lora_" in n}
    adapters = {n: p for n, p in reloaded.named_parameters() if "lora_" in n}
    assert set(adapters) == set(trained)
    for name, value in adapters.items():
        assert torch.equal(value, trained[name]), name


def test_evaluate_logs_layer_losses_and_supports_compute_metrics(tmp_path, tokenizer, dataset):
    seen = {}

    def compute_metrics(prediction):
        seen["shape"] = prediction.predictions.shape
        return {"n": float(len(prediction.predictions))}

    args = train_args(tmp_path, per_device_eval_batch_size=64)
    model = tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id)
    trainer = ConstrainedSFTTrainer(
        model=model, args=args, train_dataset=dataset, eval_dataset=dataset, processing_class=tokenizer
    )
    metrics = trainer.evaluate()
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    with torch.no_grad():
        ell = _naive_layer_losses(trainer, batch)
    for layer in range(4):
        assert metrics[f"eval_layer_loss/{layer}"] == pytest.approx(ell[layer].item(), abs=1e-5)
    assert metrics["eval_loss"] == pytest.approx(ell[3].item(), abs=1e-5)
    assert "eval_dual/3" in metrics and "eval_constraint_satisfaction" in metrics
    trainer.compute_metrics = compute_metrics
    assert trainer.evaluate()["eval_n"] == len(dataset) and seen["shape"][-1] == len(tokenizer)


def test_gradient_checkpointing_trains_identically(tmp_path, tokenizer, dataset):
    # TRL turns gradient checkpointing on by default: the hidden states of every layer must still reach the readout
    plain = tiny_trainer(tmp_path / "a", tokenizer, dataset, max_steps=3, activation_checkpointing=False)
    plain.train()
    checkpointed = tiny_trainer(tmp_path / "b", tokenizer, dataset, max_steps=3, activation_checkpointing=True)
    checkpointed.train()
    assert torch.allclose(plain.dual_variables, checkpointed.dual_variables, atol=1e-6)
    assert torch.allclose(_params(plain), _params(checkpointed), atol=1e-6)


def test_constrained_layer_mask_by_hand():
    from hf_cut.config import constrained_layer_mask

    assert constrained_layer_mask("all", 3) == [True] * 3
    assert constrained_layer_mask("upper_half", 30) == [False] * 15 + [True] * 15  # layers 16 … 30
    assert constrained_layer_mask("upper_half", 5) == [False, False, True, True, True]  # l > 5 // 2
    assert constrained_layer_mask(" 2, 4,6-8 ", 8) == [False, True, False, True, False, True, True, True]
    with pytest.raises(ValueError, match="outside 1 … 4"):
        constrained_layer_mask("3-5", 4)
    with pytest.raises(ValueError, match="`constrained_layers`"):
        ConstrainedSFTConfig(output_dir="unused", use_cpu=True, constrained_layers="upper")


def test_constrained_layers_leave_the_others_at_zero(tmp_path, tokenizer, dataset):
    """Only constraints 3 and 4 of a 4-layer model enforced: their λ follow the hard dual step by hand from the layer
    losses the trainer measured (learning rate 0, so the losses do not depend on λ); λ_1 = λ_2 = 0 throughout."""
    from tests.conftest import tiny_causal_lm

    model = tiny_causal_lm(vocab_size=len(tokenizer), num_layers=4, pad_token_id=tokenizer.pad_token_id)
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, model=model, max_steps=3, learning_rate=0.0, dual_lr=0.5,
                           constrained_layers="3-4")  # fmt: skip
    seen = []
    accumulate = trainer.duals.accumulate
    trainer.duals.accumulate = lambda losses, n: seen.append(losses.detach().double().clone()) or accumulate(losses, n)
    trainer.train()
    lam = torch.zeros(4, dtype=torch.float64)
    for losses in seen:
        lam = torch.clamp(lam + 0.5 * (losses[1:] - 0.9 * losses[:-1]), min=0) * torch.tensor([0.0, 0.0, 1.0, 1.0])
    assert len(seen) == 3 and torch.allclose(trainer.dual_variables.double(), lam, atol=1e-6)
    assert trainer.dual_variables[:2].eq(0).all() and trainer.dual_variables[2:].gt(0).any()
    with pytest.raises(ValueError, match="outside 1 … 4"):
        tiny_trainer(tmp_path, tokenizer, dataset, model=model, constrained_layers="3-9")
