"""Embedding noise: its statistics, exact zero at γ = 0, the padding rule, removal and replay."""

import pytest
import torch

from hf_cut.noise import EmbeddingNoise
from tests.conftest import tiny_causal_lm


def _embed_output(model, input_ids, attention_mask=None):
    captured = {}
    handle = model.get_input_embeddings().register_forward_hook(lambda m, a, out: captured.setdefault("out", out))
    model(input_ids=input_ids, attention_mask=attention_mask)
    handle.remove()
    return captured["out"]


def test_noise_has_mean_mu_and_std_gamma_sigma():
    embeds = torch.randn(64, 128, 32) * 3.0 + 1.0
    noise = EmbeddingNoise(gamma=0.5, mean=0.2)
    torch.manual_seed(0)
    eps = noise.sample(embeds)
    sigma_x = embeds.std().item()  # independent: std of all clean entries
    assert eps.mean().item() == pytest.approx(0.2, abs=0.01)
    assert eps.std().item() == pytest.approx(0.5 * sigma_x, rel=0.01)


def test_sigma_ignores_padding_positions():
    embeds = torch.randn(8, 10, 16)
    mask = torch.ones(8, 10, dtype=torch.long)
    mask[:, 6:] = 0
    embeds[:, 6:] = 1000.0  # padding far out: it would dominate σ_x if counted
    torch.manual_seed(0)
    eps = EmbeddingNoise(gamma=1.0).sample(embeds, mask)
    sigma_clean = embeds[:, :6].std().item()
    assert eps.std().item() == pytest.approx(sigma_clean, rel=0.05)


def test_gamma_zero_is_exactly_clean_and_remove_restores_model():
    model = tiny_causal_lm("llama", vocab_size=50)
    ids = torch.randint(0, 50, (2, 9))
    clean = model(input_ids=ids).logits
    noise = EmbeddingNoise(gamma=0.0).attach(model)
    assert torch.equal(model(input_ids=ids).logits, clean)
    noise.gamma = 1.0
    assert not torch.allclose(model(input_ids=ids).logits, clean)
    noise.remove()
    assert torch.equal(model(input_ids=ids).logits, clean)
    assert not noise.attached


def test_hook_uses_model_attention_mask_and_torch_rng():
    model = tiny_causal_lm("llama", vocab_size=50)
    ids = torch.randint(0, 50, (2, 9))
    mask = torch.ones_like(ids)
    mask[0, 5:] = 0
    clean = _embed_output(model, ids).detach()
    noise = EmbeddingNoise(gamma=0.7).attach(model)
    torch.manual_seed(123)
    noisy = _embed_output(model, ids, mask).detach()
    torch.manual_seed(123)
    replay = _embed_output(model, ids, mask).detach()
    assert torch.equal(noisy, replay)  # the same seed replays the same noise
    # the draw equals γ σ_x · N(0, 1) with σ_x over the unpadded positions only
    torch.manual_seed(123)
    expected = clean + torch.randn_like(clean) * 0.7 * clean[mask.bool()].std()
    assert torch.allclose(noisy, expected, atol=1e-6)
    noise.remove()


def test_negative_gamma_rejected():
    with pytest.raises(ValueError, match="noise_gamma"):
        EmbeddingNoise(gamma=-0.1)


# --- The trainers' noise: a training intervention ---


def _trained_with_noise(tmp_path, tokenizer, dataset, **overrides):
    from tests.conftest import tiny_trainer

    trainer = tiny_trainer(tmp_path, tokenizer, dataset, noise_gamma=1.0, max_steps=2,
                           **overrides)  # fmt: skip
    trainer.eval_dataset = trainer.train_dataset.select(range(8))
    return trainer


def test_training_noise_acts_on_training_forwards_only(tmp_path, tokenizer, dataset):
    """Trained with γ = 1: the hook perturbs the training forwards (the loss differs from a clean forward of the same
    batch), is removed when train() returns, and evaluate() twice and greedy generation twice agree exactly."""
    trainer = _trained_with_noise(tmp_path, tokenizer, dataset)
    seen = []
    trainer.add_callback(type("Spy", (__import__("transformers").TrainerCallback,), {
        "on_step_begin": lambda self, *a, **k: seen.append(trainer.noise.attached)})())  # fmt: skip
    trainer.train()
    assert seen == [True, True] and not trainer.noise.attached
    model = trainer.model
    batch = trainer._prepare_inputs(next(iter(trainer.get_eval_dataloader())))
    model.train()
    with trainer._noise_attached(), torch.no_grad():
        torch.manual_seed(0)
        noisy = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    clean = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(noisy, clean)  # training forwards are perturbed
    first, second = trainer.evaluate(), trainer.evaluate()
    assert first["eval_loss"] == second["eval_loss"]
    assert first["eval_layer_loss/3"] == second["eval_layer_loss/3"]
    model.eval()
    ids = tokenizer(["the cat sat on"], return_tensors="pt")
    outputs = [model.generate(**ids, max_new_tokens=6, do_sample=False).tolist() for _ in range(2)]
    assert outputs[0] == outputs[1]


def test_noise_at_eval_perturbs_evaluate(tmp_path, tokenizer, dataset):
    trainer = _trained_with_noise(tmp_path, tokenizer, dataset, noise_at_eval=True)
    torch.manual_seed(1)
    first = trainer.evaluate()["eval_loss"]
    torch.manual_seed(2)
    second = trainer.evaluate()["eval_loss"]
    trainer.args.noise_at_eval = False
    clean = trainer.evaluate()["eval_loss"]
    assert first != second and clean not in (first, second) and not trainer.noise.attached


def test_hook_removed_when_training_raises(tmp_path, tokenizer, dataset):
    trainer = _trained_with_noise(tmp_path, tokenizer, dataset)

    def fail(*args, **kwargs):
        assert trainer.noise.attached
        raise RuntimeError("stop")

    trainer.training_step = fail
    with pytest.raises(RuntimeError, match="stop"):
        trainer.train()
    assert not trainer.noise.attached


def test_noise_at_eval_must_be_a_bool(tmp_path):
    from tests.conftest import train_args

    with pytest.raises(ValueError, match="noise_at_eval"):
        train_args(tmp_path, noise_at_eval="sometimes")
