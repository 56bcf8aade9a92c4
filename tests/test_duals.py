"""Dual variables against hand-computed numbers and autograd."""

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hf_cut.duals import DualVariables, descent_ratios, lagrangian_penalty, slack


def test_slack_and_ratios_by_hand():
    losses = torch.tensor([2.0, 1.5, 1.4])
    # s_1 = 1.5 − 0.9·2.0, s_2 = 1.4 − 0.9·1.5
    assert torch.allclose(slack(losses, 0.1), torch.tensor([-0.3, 0.05]), atol=1e-6)
    assert torch.allclose(descent_ratios(losses), torch.tensor([0.75, 1.4 / 1.5]))


def test_projected_dual_ascent_by_hand():
    duals = DualVariables(2, alpha=0.1, lr=0.1, init=0.0)
    duals.multipliers = torch.tensor([0.0, 0.5], dtype=torch.float64)
    duals.accumulate(torch.tensor([2.0, 1.5, 1.4]), num_tokens=10)
    step_slack = duals.step()
    assert torch.allclose(step_slack, torch.tensor([-0.3, 0.05], dtype=torch.float64))
    # λ_1 = max(0, 0 + 0.1·(−0.3)) = 0 (projected), λ_2 = 0.5 + 0.1·0.05 = 0.505
    assert torch.allclose(duals.multipliers, torch.tensor([0.0, 0.505], dtype=torch.float64))


def test_resilient_relaxation_by_hand():
    duals = DualVariables(1, alpha=0.1, lr=0.1, init=1.0, resilience_coef=2.0)
    duals.accumulate(torch.tensor([1.0, 1.0]), num_tokens=1)
    duals.step()
    # implicit step: λ ← max(0, (1 + 0.1·s) / (1 + 0.1/2)) with s = 1 − 0.9·1 = 0.1 → 1.01 / 1.05
    assert duals.multipliers.item() == pytest.approx(1.01 / 1.05)


def _constant_slack_steps(lr, beta, s, steps, init=0.0):
    """λ after each of ``steps`` dual steps on layer losses [1, 0.9 + s] (slack s at α = 0.1)."""
    duals = DualVariables(1, alpha=0.1, lr=lr, init=init, resilience_coef=beta)
    out = []
    for _ in range(steps):
        duals.accumulate(torch.tensor([1.0, 0.9 + s], dtype=torch.float64), num_tokens=1)
        duals.step()
        out.append(duals.multipliers.item())
    return out


def test_resilient_step_with_large_dual_lr_settles_monotonically():
    """η_d = 10β: the explicit step λ(1 − η/β) + η s would multiply λ by −9; the implicit one is, by hand,
    λ_{k+1} = (λ_k + η s)/(1 + η/β) = (λ_k + 10β s)/11, i.e. λ_k = β s (1 − 11^{−k}), rising to β s without overshoot."""
    beta, s = 0.1, 0.5
    seq = _constant_slack_steps(lr=10 * beta, beta=beta, s=s, steps=8)
    expected = [beta * s * (1 - 11.0 ** -(k + 1)) for k in range(8)]
    assert seq == pytest.approx(expected, rel=1e-9)
    assert all(b > a for a, b in zip(seq, seq[1:])) and max(seq) <= beta * s
    # from above the fixed point: decreases monotonically, never flips sign
    down = _constant_slack_steps(lr=10 * beta, beta=beta, s=s, steps=6, init=5.0)
    assert all(b < a for a, b in zip([5.0] + down, down)) and min(down) >= beta * s


def test_resilient_step_matches_explicit_step_to_first_order():
    """For η ≪ β the implicit and explicit steps differ by O((η/β)²): one step from λ = 1 at slack 0.2."""
    beta, s, lam = 1.0, 0.2, 1.0
    for lr in (1e-2, 1e-3):
        implicit = _constant_slack_steps(lr=lr, beta=beta, s=s, steps=1, init=lam)[0]
        explicit = lam + lr * (s - lam / beta)
        assert abs(implicit - explicit) <= 2 * (lr / beta) ** 2 * (lam + lr * s)
        assert abs(implicit - explicit) > 0


def test_hard_constraints_step_is_plain_projected_ascent():
    for beta in (None, float("inf")):
        assert _constant_slack_steps(lr=0.5, beta=beta, s=0.2, steps=3) == pytest.approx([0.1, 0.2, 0.3])
        assert _constant_slack_steps(lr=0.5, beta=beta, s=-0.2, steps=2, init=0.15) == pytest.approx([0.05, 0.0])


def test_accumulated_micro_batches_equal_one_batch():
    # Two micro-batches of 3 and 1 tokens are one batch of 4 tokens: the step uses the token-weighted means.
    a = DualVariables(2, alpha=0.1, lr=1.0)
    a.accumulate(torch.tensor([3.0, 2.0, 1.0]), 3)
    a.accumulate(torch.tensor([1.0, 2.0, 3.0]), 1)
    b = DualVariables(2, alpha=0.1, lr=1.0)
    b.accumulate(torch.tensor([(9 + 1) / 4, 2.0, (3 + 3) / 4]), 4)
    assert torch.allclose(a.step(), b.step())
    assert torch.allclose(a.multipliers, b.multipliers)
    # expected by hand: means [2.5, 2.0, 1.5] → slack [2 − 2.25, 1.5 − 1.8] = [−0.25, −0.3] → λ stays 0
    assert torch.equal(a.multipliers, torch.zeros(2, dtype=torch.float64))


def test_state_dict_round_trip_keeps_accumulated_slack():
    a = DualVariables(2, alpha=0.2, lr=0.3, init=0.1)
    a.accumulate(torch.tensor([1.0, 1.0, 1.0]), 2)
    a.step()
    a.accumulate(torch.tensor([2.0, 1.0, 1.5]), 5)
    b = DualVariables(2, alpha=0.2, lr=0.3)
    b.load_state_dict(a.state_dict())
    assert torch.allclose(a.step(), b.step())
    assert torch.equal(a.multipliers, b.multipliers)
    with pytest.raises(ValueError, match="3 constraints"):
        DualVariables(3, alpha=0.2, lr=0.3).load_state_dict(a.state_dict())


def _losses(params: torch.Tensor) -> torch.Tensor:
    a, b, c = params
    return torch.stack([a**2, b**2, c**2])


@pytest.mark.parametrize("detach", [True, False])
def test_penalty_gradient_matches_hand_derivation(detach):
    params = torch.tensor([1.5, -0.7, 0.4], requires_grad=True)
    lam = torch.tensor([0.3, 0.8])
    alpha = 0.1
    lagrangian_penalty(_losses(params), lam, alpha, detach_previous=detach).backward()
    a, b, c = params.detach()
    # Σ λ_l (ℓ_l − (1 − α) ℓ_{l−1}) with ℓ = (a², b², c²)
    if detach:  # only ℓ_l is differentiated
        expected = torch.stack([0 * a, lam[0] * 2 * b, lam[1] * 2 * c])
    else:  # the literal form also differentiates −(1 − α) ℓ_{l−1}: it rewards raising earlier losses
        expected = torch.stack(
            [-(1 - alpha) * lam[0] * 2 * a, lam[0] * 2 * b - (1 - alpha) * lam[1] * 2 * b, lam[1] * 2 * c]
        )
    assert torch.allclose(params.grad, expected, atol=1e-6)


def test_literal_slack_pushes_earlier_loss_up():
    # One gradient step on the penalty: the literal form raises ℓ_0, the stop-gradient form leaves it alone.
    for detach, direction in ((True, 0), (False, 1)):
        params = torch.tensor([1.0, 1.0, 1.0], requires_grad=True)
        lagrangian_penalty(_losses(params), torch.tensor([1.0, 1.0]), 0.1, detach_previous=detach).backward()
        new_l0 = (params.detach()[0] - 0.1 * params.grad[0]) ** 2
        assert torch.sign(new_l0 - 1.0).item() == direction


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_step(rank: int, port: int, out):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    duals = DualVariables(2, alpha=0.1, lr=1.0)
    losses = [torch.tensor([2.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 2.0])][rank]
    duals.accumulate(losses, [1, 3][rank])
    duals.step()
    out[rank] = duals.multipliers.clone()
    dist.destroy_process_group()


def test_all_reduce_gives_every_rank_the_pooled_step():
    out = mp.Manager().dict()
    mp.spawn(_rank_step, args=(_free_port(), out), nprocs=2, join=True)
    # pooled means: ([2,1,1]·1 + [1,1,2]·3) / 4 = [1.25, 1, 1.75] → slack [1 − 1.125, 1.75 − 0.9] → λ = [0, 0.85]
    expected = torch.tensor([0.0, 0.85], dtype=torch.float64)
    assert torch.allclose(out[0], expected) and torch.allclose(out[1], expected)
