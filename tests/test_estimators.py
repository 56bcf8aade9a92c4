"""The cheap estimators of the Lagrangian's gradient: layer sampling, rotation, the token fractions.

Each claim of unbiasedness is checked against the full computation in *exact* expectation: systematic sampling's
outcome is a step function of its one uniform draw u, so the expectation is a finite sum over u's intervals.
"""

import math

import pytest
import torch

from hf_cut.layer_sampling import inclusion_probabilities, rotation, systematic_sample
from hf_cut.readout import LayerReadoutRequest, add_layer_readout
from tests.conftest import tiny_causal_lm, tiny_trainer
from tests.test_readout import _batch, _naive_token_nll
from tests.test_trainer import _first_batch, _naive_layer_losses


@pytest.mark.parametrize(
    "weights, m, expected",
    [
        ([1.0, 1.0, 2.0], 2, [0.5, 0.5, 1.0]),
        ([1.0, 2.0, 3.0, 4.0], 2, [0.2, 0.4, 0.6, 0.8]),
        ([0.0, 1.0, 1.0], 1, [0.0, 0.5, 0.5]),
        ([0.0, 0.5, 0.2, 0.9], 2, [0.0, 5 / 7, 2 / 7, 1.0]),  # 2·0.9/1.6 > 1: capped, the rest share one draw
        ([1.0, 1.0, 100.0, 50.0], 3, [0.5, 0.5, 1.0, 1.0]),  # capping twice
        ([0.0, 3.0, 0.0], 2, [0.0, 1.0, 0.0]),  # fewer candidates than m: all of them
        ([1.0, -3.0], 1, [0.25, 0.75]),  # signed weights (no stop-gradient): by size
    ],
)
def test_inclusion_probabilities_by_hand(weights, m, expected):
    assert inclusion_probabilities(weights, m) == pytest.approx(expected)


def _u_intervals(pi):
    """[(probability, midpoint u)] of the intervals of u on which systematic sampling's outcome is constant."""
    cuts = sorted({0.0, 1.0} | {c - math.floor(c) for c in torch.tensor(pi, dtype=torch.float64).cumsum(0).tolist()})
    return [(b - a, (a + b) / 2) for a, b in zip(cuts, cuts[1:]) if b > a]


@pytest.mark.parametrize("pi", [[0.0, 5 / 7, 2 / 7, 1.0], [0.2, 0.4, 0.6, 0.8], [0.5, 0.5, 1.0, 1.0], [1 / 3] * 3])
def test_systematic_sample_has_exactly_the_inclusion_probabilities(pi):
    m = round(sum(pi))
    inclusion = [0.0] * len(pi)
    for prob, u in _u_intervals(pi):
        chosen = systematic_sample(pi, u)
        assert len(chosen) == m and len(set(chosen)) == m
        for l in chosen:
            inclusion[l] += prob
    assert inclusion == pytest.approx(pi, abs=1e-12)


def test_rotation_visits_every_candidate_equally_over_a_cycle():
    candidates = [1, 2, 4, 5, 6]
    counts = {c: 0 for c in candidates}
    for position in range(len(candidates)):
        for l in rotation(candidates, 2, position):
            counts[l] += 1
    assert set(counts.values()) == {2}
    assert rotation(candidates, 7, 3) == candidates


def _grad(trainer, batch):
    trainer.model.zero_grad()
    trainer.compute_loss(trainer.model, batch).backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in trainer.model.parameters() if p.grad is not None])


def _expected_grad(trainer, batch, lam):
    """∇(ℓ_L + Σ_l λ_l (ℓ_l − (1 − α) sg(ℓ_{l−1}))) from full logits: the gradient of Σ_l λ_l ℓ_l + ℓ_L."""
    trainer.model.zero_grad()
    ell = _naive_layer_losses(trainer, batch)
    (ell[-1] + (torch.tensor(lam) * ell[1:]).sum()).backward()
    return torch.cat([p.grad.reshape(-1).clone() for p in trainer.model.parameters() if p.grad is not None])


LAM = [0.5, 0.2, 0.9, 0.4]  # λ_1 … λ_4 of a 4-layer model: weights c_0 … c_3 = 0, 0.5, 0.2, 0.9


def _four_layer_trainer(tmp_path, tokenizer, dataset, **overrides):
    model = tiny_causal_lm("llama", vocab_size=len(tokenizer), num_layers=4, pad_token_id=tokenizer.pad_token_id)
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, model=model, **overrides)
    trainer.duals.multipliers = torch.tensor(LAM, dtype=torch.float64)
    trainer.model.train()
    return trainer


def test_weighted_layer_sampling_is_unbiased_in_exact_expectation(tmp_path, tokenizer, dataset):
    trainer = _four_layer_trainer(tmp_path, tokenizer, dataset, layer_sample_size=2)
    batch = _first_batch(trainer)
    expected = _expected_grad(trainer, batch, LAM)
    pi = inclusion_probabilities([0.0, 0.5, 0.2, 0.9], 2)
    mean = torch.zeros_like(expected)
    sets = set()
    for prob, u in _u_intervals(pi):
        trainer.problem.draw_uniform = lambda step, u=u: u
        trainer.problem._sample_cache = None
        sets.add(tuple(l for l, g in enumerate(trainer._grad_layers()) if g))
        mean += prob * _grad(trainer, batch)
    assert sets == {(1, 3), (2, 3)}  # layer 3 always (π = 1), then 1 or 2; never layer 0 (weight 0)
    assert torch.allclose(mean, expected, atol=1e-5, rtol=1e-4)
    # one draw alone is not the full gradient: the test can fail
    assert not torch.allclose(_grad(trainer, batch), expected, atol=1e-3)


def test_rotation_is_unbiased_over_a_cycle(tmp_path, tokenizer, dataset):
    trainer = _four_layer_trainer(tmp_path, tokenizer, dataset, layer_sample_size=1, layer_sampling="rotation")
    batch = _first_batch(trainer)
    expected = _expected_grad(trainer, batch, LAM)
    mean = torch.zeros_like(expected)
    for position in range(3):  # candidates 1, 2, 3
        trainer.state.global_step = position
        mean += _grad(trainer, batch) / 3
    assert torch.allclose(mean, expected, atol=1e-5, rtol=1e-4)


def test_layer_sample_depends_on_seed_and_step_only(tmp_path, tokenizer, dataset):
    first = _four_layer_trainer(tmp_path / "a", tokenizer, dataset, layer_sample_size=1)
    second = _four_layer_trainer(tmp_path / "b", tokenizer, dataset, layer_sample_size=1)
    pi = inclusion_probabilities([0.0, 0.5, 0.2, 0.9], 1)
    counts = [0] * 4
    steps = 3000
    for step in range(steps):
        first.state.global_step = second.state.global_step = step
        sample = first.problem.sample_layers(step)
        assert sample == second.problem.sample_layers(step)  # every rank, and a resumed run, draw alike
        for l in sample:
            counts[l] += 1
    for l, p in enumerate(pi):
        assert abs(counts[l] / steps - p) <= 4 * math.sqrt(p * (1 - p) / steps) + 1e-9


def test_loss_value_is_the_lagrangian_whatever_the_sample(tmp_path, tokenizer, dataset):
    trainer = _four_layer_trainer(tmp_path, tokenizer, dataset, layer_sample_size=1, descent_alpha=0.2)
    batch = _first_batch(trainer)
    ell = _naive_layer_losses(trainer, batch)
    expected = ell[-1] + sum(lam * (ell[l] - 0.8 * ell[l - 1]) for l, lam in enumerate(LAM, start=1))
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx(expected.item(), abs=1e-5)


def test_a_sample_of_every_token_equals_fraction_one():
    """Rules a bug in the sampled path in or out: a random permutation of all the tokens is fraction 1, exactly."""
    model = tiny_causal_lm("llama", vocab_size=64)
    add_layer_readout(model)
    ids, attention, labels = _batch()
    grads, losses = [], []
    for fraction in (1.0, 0.9999):  # 0.9999 · n rounds to n: the sampled code path, on every token
        model.zero_grad()
        out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=LayerReadoutRequest(fraction))
        assert out.num_sampled_tokens.item() == int((labels[:, 1:] != -100).sum())
        (out.loss + out.layer_losses.sum()).backward()
        losses.append(out.layer_losses.detach())
        grads.append(torch.cat([p.grad.reshape(-1) for p in model.parameters()]))
    assert torch.allclose(losses[0], losses[1], atol=1e-6)
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_training_on_a_sample_of_every_token_equals_fraction_one(tmp_path, tokenizer, dataset):
    runs = []
    for fraction in (1.0, 0.99999):
        trainer = tiny_trainer(tmp_path / str(fraction), tokenizer, dataset, layer_loss_token_fraction=fraction)
        trainer.train()
        runs.append((trainer.dual_variables, torch.cat([p.detach().reshape(-1) for p in trainer.model.parameters()])))
    assert torch.allclose(runs[0][0], runs[1][0], atol=1e-5)
    assert torch.allclose(runs[0][1], runs[1][1], atol=1e-5)


def test_dual_token_fraction_scores_the_values_on_the_first_tokens_of_the_gradient_sample():
    model = tiny_causal_lm("llama", vocab_size=64, num_layers=3)
    ids, attention, labels = _batch()
    naive = _naive_token_nll(model, ids, attention, labels).detach()  # [L + 1, B, T − 1]
    add_layer_readout(model)
    request = LayerReadoutRequest(0.5, grad_layers=[False, True, False], dual_token_fraction=0.25)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=request)
    n = int((labels[:, 1:] != -100).sum())
    k, k_v = round(0.5 * n), round(0.25 * n)
    assert out.num_sampled_tokens.item() == k_v
    request.return_token_log_probs = True
    torch.manual_seed(3)
    out = model(input_ids=ids, attention_mask=attention, labels=labels, layer_readout=request)
    rows, cols = out.token_positions.unbind(1)
    assert len(rows) == k_v
    # the values: every layer's mean NLL on the same k_v tokens
    assert torch.allclose(out.layer_losses.detach(), naive[:, rows, cols].mean(1), atol=1e-5)
    # the gradient's sample: k tokens, of which the value sample is the start (same draw)
    torch.manual_seed(3)
    perm = torch.randperm(n)
    mask = labels[:, 1:] != -100
    flat = naive.reshape(naive.shape[0], -1)[:, mask.reshape(-1)]
    assert torch.allclose(out.layer_losses.detach(), flat[:, perm[:k_v]].mean(1), atol=1e-5)
    expected_grad_losses = flat[:, perm[:k]].mean(1)
    for layer in (1, 3):  # the layer with grad and the last one on k tokens; the others keep their values
        assert out.grad_layer_losses[layer].item() == pytest.approx(expected_grad_losses[layer].item(), abs=1e-5)
    assert out.grad_layer_losses[0].item() == pytest.approx(out.layer_losses[0].item(), abs=1e-6)


def test_dual_token_fraction_above_the_token_fraction_is_refused(tmp_path):
    from hf_cut import ConstrainedSFTConfig

    with pytest.raises(ValueError, match="`dual_token_fraction` must be None or a number in"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_loss_token_fraction=0.25, dual_token_fraction=0.5)
    with pytest.raises(ValueError, match="`layer_sample_size` must be None"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_sample_size=0, layer_loss_budget=None)
    with pytest.raises(ValueError, match="`layer_sampling` must be 'weighted' or 'rotation'"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_sampling="random")
    with pytest.raises(ValueError, match=r"but layer_loss_token_fraction is set too; set `layer_loss_budget=None`"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_loss_token_fraction=0.5)
    with pytest.raises(ValueError, match="`layer_loss_budget` must be None .* or a number > 0"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_loss_budget=-1)
    with pytest.raises(ValueError, match="`layer_loss_budget` must be None or a number, got 'lots'"):
        ConstrainedSFTConfig(output_dir=str(tmp_path), layer_loss_budget="lots")
    config = ConstrainedSFTConfig(output_dir=str(tmp_path), layer_loss_budget="none", use_cpu=True, bf16=False)
    assert config.layer_loss_budget is None


def test_budget_allocation_by_hand():
    from hf_cut.cost import allocate

    # the benchmark's cpu shape: plain 92.8 MFLOP per token, readout 16.4: 0.566 readout units of budget
    b = allocate(0.1, plain=92.8e6, readout=16.384e6, num_layers=4)
    units = 0.1 * 92.8 / 16.384
    assert b.layer_sample_size == 1
    assert b.dual_token_fraction == pytest.approx(units / 12)  # a quarter of the budget over the 3 layers without grad
    assert b.token_fraction == pytest.approx(3 * units / 16)  # the rest on one layer with grad (4 readout units)
    assert b.extra == pytest.approx(0.1)
    # a cheap readout: f reaches 1, then m grows (3 layers of 5 on every token), values capped at the gradient's share
    b = allocate(1.0, plain=200.0, readout=10.0, num_layers=6)
    assert (b.layer_sample_size, b.token_fraction) == (3, 1.0) and b.dual_token_fraction == 1.0  # 20/4/3 > 1
    b = allocate(10.0, plain=200.0, readout=10.0, num_layers=6)
    assert (b.layer_sample_size, b.token_fraction, b.dual_token_fraction) == (5, 1.0, 1.0)


def test_trainer_spends_the_budget_from_the_models_parameter_counts(tmp_path, tokenizer, dataset):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, layer_loss_budget=0.1)
    model = trainer.model
    V, d = model.lm_head.weight.shape
    body = sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)
    plain, readout = 3 * 2 * body + 4 * 2 * V * d, 2 * V * d  # no activation checkpointing in the tests
    units = 0.1 * plain / readout  # the documented rule: 3/4 of it on m layers with grad, f reaching 1 first
    L = model.config.num_hidden_layers
    m = max(1, min(L - 1, math.floor(3 * units / 16)))
    f = min(1.0, 3 * units / 16 / m)
    assert (trainer.cost.layer_sample_size, trainer.cost.token_fraction) == (m, pytest.approx(f))
    assert trainer.cost.dual_token_fraction == pytest.approx(min(f, units / 4 / (L - m)))
    trainer.model.train()
    request = trainer._readout_request()
    assert request.token_fraction == trainer.cost.token_fraction
    assert request.dual_token_fraction == trainer.cost.dual_token_fraction


def test_erm_measures_its_layers_only_on_the_steps_it_logs(tmp_path, tokenizer, dataset):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, constrained=False, max_steps=6, logging_steps=3)
    measured = []
    request = trainer._readout_request
    trainer._readout_request = lambda: measured.append(trainer.state.global_step) or request()
    trainer.train()
    assert measured == [2, 5]  # the micro-batches of optimizer steps 3 and 6, the two that are logged
    logs = [h for h in trainer.state.log_history if "layer_loss/0" in h]
    assert [h["step"] for h in logs] == [3, 6]
    # deep supervision trains its layers: every step
    trainer = tiny_trainer(tmp_path / "ds", tokenizer, dataset, constrained=False, deep_supervision_weight=0.5,
                           max_steps=3, logging_steps=3)  # fmt: skip
    measured = []
    request = trainer._readout_request
    trainer._readout_request = lambda: measured.append(trainer.state.global_step) or request()
    trainer.train()
    assert measured == [0, 1, 2]
