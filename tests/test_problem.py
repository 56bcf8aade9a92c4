"""The constrained problem as a plain object (hf_cut.problem), without any Trainer: every number below is derived by
hand in the comments next to it."""

from __future__ import annotations

import ast
import json
import os

import pytest
import torch

from hf_cut.constraint_callback import ConstraintCallback, MetricWindow
from hf_cut.problem import LayerwiseDescentProblem

# ℓ_0 … ℓ_2 of a 2-layer model; α = 0.5, λ = (1, 3)
LOSSES = [4.0, 3.0, 1.0]
# s_1 = 3 − 0.5·4 = 1,  s_2 = 1 − 0.5·3 = −0.5;  Σ λ s = 1·1 + 3·(−0.5) = −0.5


def problem(**options) -> LayerwiseDescentProblem:
    p = LayerwiseDescentProblem(2, alpha=0.5, dual_lr=0.1, **options)
    p.duals.multipliers = torch.tensor([1.0, 3.0], dtype=torch.float64)
    return p


def grads(p: LayerwiseDescentProblem, losses=LOSSES, step: int = 0, **kwargs) -> tuple[float, list[float]]:
    leaf = torch.tensor(losses, dtype=torch.float64, requires_grad=True)
    value = p.lagrangian_terms(leaf, step, **kwargs)
    value.backward()
    return value.item(), leaf.grad.tolist()


def test_the_problem_modules_import_no_trainer():
    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "hf_cut")
    for name in ("problem.py", "duals.py", "layer_sampling.py"):
        tree = ast.parse(open(os.path.join(root, name), encoding="utf-8").read())
        modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m.split(".")[0] for m in modules} & {"transformers", "trl", "accelerate", "peft"}, name


def test_lagrangian_value_and_gradient_with_the_stop_gradient():
    value, grad = grads(problem())
    assert value == pytest.approx(-0.5)
    # ∂/∂ℓ_0 = 0 (only a detached previous loss), ∂/∂ℓ_1 = λ_1 = 1, ∂/∂ℓ_2 = λ_2 = 3
    assert grad == pytest.approx([0.0, 1.0, 3.0])


def test_lagrangian_gradient_of_the_literal_slack():
    value, grad = grads(problem(detach_previous_loss=False))
    assert value == pytest.approx(-0.5)
    # ∂/∂ℓ_0 = −(1−α) λ_1 = −0.5, ∂/∂ℓ_1 = λ_1 − (1−α) λ_2 = 1 − 1.5 = −0.5, ∂/∂ℓ_2 = λ_2 = 3
    assert grad == pytest.approx([-0.5, -0.5, 3.0])
    # the weights the layer sampler draws by are those derivatives (ℓ_L's aside); with the stop-gradient, (0, λ_1)
    assert problem(detach_previous_loss=False).layer_weights() == pytest.approx([-0.5, -0.5])
    assert problem().layer_weights() == pytest.approx([0.0, 1.0])


def test_the_weight_scales_value_and_gradient():
    value, grad = grads(problem(), weight=0.25, count=8)
    assert value == pytest.approx(-0.125) and grad == pytest.approx([0.0, 0.25, 0.75])


def test_deep_supervision_and_erm_terms():
    ds = LayerwiseDescentProblem(3, constrained=False, deep_supervision_weight=0.6)
    value, grad = grads(ds, [5.0, 4.0, 3.0, 2.0])
    # w · mean(ℓ_1, ℓ_2) = 0.6 · 3.5 = 2.1; each of the two layers gets 0.6 / 2
    assert value == pytest.approx(2.1) and grad == pytest.approx([0.0, 0.3, 0.3, 0.0])
    assert ds.layer_weights() == pytest.approx([0.0, 0.3, 0.3])
    erm = LayerwiseDescentProblem(3, constrained=False)
    leaf = torch.tensor([5.0, 4.0, 3.0, 2.0], requires_grad=True)
    nothing = erm.lagrangian_terms(leaf, 0)
    assert nothing.item() == 0.0 and not nothing.requires_grad  # plain ERM: ℓ_L alone
    assert not erm.has_layer_terms and erm.grad_layers(0) == [False, False, False]
    assert ds.dual_step(1) is None and erm.dual_step(1) is None  # no dual step without constraints


def test_metrics_of_a_batch():
    m = problem().metrics(torch.tensor(LOSSES), logged=torch.tensor([4.0, 3.0, 1.5]))
    assert m["slack/1"] == pytest.approx(1.0) and m["slack/2"] == pytest.approx(-0.5)
    assert m["constraint_satisfaction"] == 0.5  # one of two constraints holds
    assert m["descent_ratio_mean"] == pytest.approx((3 / 4 + 1 / 3) / 2)
    assert [m[f"layer_loss/{l}"] for l in range(3)] == [4.0, 3.0, 1.5]  # the logged values, not the estimate
    assert problem().dual_metrics() == {"dual/1": 1.0, "dual/2": 3.0, "dual/skipped_nonfinite": 0.0}


def test_dual_step_hard_resilient_and_its_schedule():
    p = problem()
    # two micro-batches of 1 and 3 tokens: token-weighted means (4·1 + 2·3)/4 = 2.5, 3, 1
    grads(p, [4.0, 3.0, 1.0], count=1)
    grads(p, [2.0, 3.0, 1.0], count=3)
    # s = (3 − 1.25, 1 − 1.5) = (1.75, −0.5); λ ← [λ + 0.1 s]₊ = (1.175, 2.95)
    assert p.dual_step(1).tolist() == pytest.approx([1.75, -0.5])
    assert p.duals.multipliers.tolist() == pytest.approx([1.175, 2.95])

    resilient = problem(resilience_coef=0.5)
    grads(resilient, [2.5, 3.0, 1.0], count=4)
    resilient.dual_step(1)
    # implicit step: (λ + η s) / (1 + η/β) = (1.175, 2.95) / 1.2
    assert resilient.duals.multipliers.tolist() == pytest.approx([1.175 / 1.2, 2.95 / 1.2])

    scheduled = problem(dual_update_interval=2, layer_loss_interval=4)
    grads(scheduled, LOSSES, count=1)
    assert scheduled.dual_step(1) is None  # not a dual step: the slack stays accumulated
    scheduled.dual_step(2)
    # η scaled by K / D = 4 / 2: λ ← λ + 0.2 s = (1 + 0.2, 3 − 0.1)
    assert scheduled.duals.multipliers.tolist() == pytest.approx([1.2, 2.9])


def test_sampled_layers_and_their_horvitz_thompson_gradient(monkeypatch):
    p = LayerwiseDescentProblem(4, alpha=0.1, layer_sample_size=2)
    p.duals.multipliers = torch.tensor([0.5, 0.2, 0.9, 0.4], dtype=torch.float64)
    # c = (0, λ_1, λ_2, λ_3) = (0, 0.5, 0.2, 0.9); m = 2: layer 3 capped at π = 1 (2·0.9/1.6 ≥ 1), the remaining one
    # draw shared 5:2 by layers 1 and 2 → π = (0, 5/7, 2/7, 1); intervals [0, 5/7), [5/7, 1), [1, 2)
    monkeypatch.setattr(p, "draw_uniform", lambda step: 0.1)  # points 0.1 and 1.1: layers 1 and 3
    assert p.sample_layers(0) == pytest.approx({1: 7 / 5, 3: 1.0})
    assert p.grad_layers(0) == [False, True, False, True]
    losses = [5.0, 4.0, 3.0, 2.5, 2.0]
    value, grad = grads(p, losses, step=0)
    # value: the full Lagrangian Σ λ_l (ℓ_l − 0.9 ℓ_{l−1}) = 0.5·(−0.5) + 0.2·(−0.6) + 0.9·(−0.2) + 0.4·(−0.25)
    assert value == pytest.approx(-0.25 - 0.12 - 0.18 - 0.1)
    # gradient: c_1 · 7/5 on ℓ_1, c_3 on ℓ_3, λ_4 on ℓ_4 (never sampled), nothing on ℓ_0 and ℓ_2
    assert grad == pytest.approx([0.0, 0.5 * 7 / 5, 0.0, 0.9, 0.4])
    monkeypatch.setattr(p, "draw_uniform", lambda step: 0.8)  # points 0.8 and 1.8: layers 2 and 3
    assert p.sample_layers(1) == pytest.approx({2: 7 / 2, 3: 1.0})


def test_rotation_takes_the_layers_in_turn():
    p = LayerwiseDescentProblem(4, alpha=0.1, layer_sample_size=1, layer_sampling="rotation", layer_loss_interval=2)
    p.duals.multipliers = torch.tensor([0.5, 0.2, 0.9, 0.4], dtype=torch.float64)
    # candidates 1, 2, 3 (c_0 = 0); position = step // K
    assert [list(p.sample_layers(step)) for step in (0, 2, 4, 6)] == [[1], [2], [3], [1]]
    assert p.sample_layers(2) == {2: 3.0}  # 3 candidates, 1 drawn


def test_nonfinite_losses_are_left_out_of_the_dual_step():
    p = problem()
    with pytest.warns(RuntimeWarning, match="global_step 7: non-finite layer losses at layers \\[1\\]"):
        grads(p, [4.0, float("nan"), 1.0], step=7, count=2)
    assert p.duals.skipped_nonfinite == 1
    assert p.dual_step(8).tolist() == [0.0, 0.0]  # nothing accumulated: λ kept, the last slack (zeros) returned
    assert p.duals.multipliers.tolist() == [1.0, 3.0]


def test_the_state_survives_trainer_state_json_exactly():
    """The callback's ExportableState goes through JSON: λ and the accumulated sums come back bit for bit."""
    p = problem(resilience_coef=1 / 3)
    grads(p, [1 / 3, 2 / 7, 0.1], count=3)
    p.dual_step(1)
    grads(p, [0.7, 1 / 9, 1e-17], count=5)  # accumulated, not yet stepped
    exported = json.loads(json.dumps(ConstraintCallback(p).state()))
    fresh = LayerwiseDescentProblem(2, alpha=0.5, dual_lr=0.1, resilience_coef=1 / 3)
    fresh.load_state_dict(exported["attributes"]["problem_state"])
    for key, value in p.state_dict().items():
        restored = fresh.state_dict()[key]
        assert torch.equal(value, restored) if isinstance(value, torch.Tensor) else value == restored, key
    fresh.dual_step(2), p.dual_step(2)
    assert torch.equal(fresh.duals.multipliers, p.duals.multipliers)


def test_metric_window_averages_and_keeps_the_last_layer_losses():
    window = MetricWindow()
    window.add("train", {"layer_loss/0": 1.0, "slack/1": -1.0})
    window.add("train", {"layer_loss/0": 3.0, "slack/1": 0.0})
    assert window.pop("train") == {"layer_loss/0": 2.0, "slack/1": -0.5}
    assert window.pop("train") == {} and window.last_layer_losses["train"] == {0: 2.0}
    assert window.pop("eval") == {}
