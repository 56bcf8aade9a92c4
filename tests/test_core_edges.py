"""Edges of the core that mutation testing found unguarded (CONTRIBUTING.md, "Mutation testing"): each value below is
worked by hand from the method's definition, not read off the code."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from hf_cut.duals import DualVariables
from hf_cut.layer_sampling import inclusion_probabilities, rotation, step_generator
from hf_cut.noise import EmbeddingNoise
from hf_cut.problem import LayerwiseDescentProblem

# --- the dual variables ---


def test_state_is_float64_and_keeps_its_settings():
    """Sums of many micro-batches are kept in float64, also after a restore from JSON (plain numbers)."""
    duals = DualVariables(2, alpha=0.25, lr=0.5, resilience_coef=4.0)
    duals.accumulate(torch.tensor([1.0, 2.0, 3.0], dtype=torch.float32), 2)
    state = duals.state_dict()
    assert {k: state[k] for k in ("alpha", "lr", "resilience_coef")} == {"alpha": 0.25, "lr": 0.5,
                                                                         "resilience_coef": 4.0}  # fmt: skip
    assert all(state[k].dtype == torch.float64 for k in ("multipliers", "last_slack", "loss_sums", "num_tokens"))
    as_json = {k: v.tolist() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
    restored = DualVariables(2, alpha=0.25, lr=0.5, resilience_coef=4.0)
    restored.load_state_dict(as_json)
    assert all(v.dtype == torch.float64 for k, v in restored.state_dict().items() if isinstance(v, torch.Tensor))
    assert duals.active.dtype == torch.bool and duals.active.tolist() == [True, True]


def test_float32_losses_are_summed_in_float64():
    """ℓ = fl32(1.1) on 3 tokens: the sum is 3 · fl32(1.1) in float64, not its float32 rounding."""
    duals = DualVariables(1, alpha=0.1, lr=1.0)
    duals.accumulate(torch.tensor([1.1, 1.1], dtype=torch.float32), 3)
    exact = 3 * torch.tensor(1.1, dtype=torch.float32).double()
    assert duals.state_dict()["loss_sums"].tolist() == [exact.item()] * 2
    p = LayerwiseDescentProblem(1)
    assert p.lagrangian_terms(torch.tensor([2.0, 1.0], requires_grad=True), step=0).dtype == torch.float32


def test_relaxation_is_lambda_over_beta():
    duals = DualVariables(2, alpha=0.1, lr=1.0, init=3.0, resilience_coef=2.0)
    assert duals.relaxation().tolist() == [1.5, 1.5]
    assert DualVariables(2, alpha=0.1, lr=1.0, init=3.0).relaxation().tolist() == [0.0, 0.0]  # hard: no relaxation


def test_inactive_constraints_stay_at_zero_and_steps_are_counted():
    """λ = [λ_1 + η s_1]₊ on the enforced layer, 0 on the measured-only one, after each of two steps."""
    duals = DualVariables(2, alpha=0.5, lr=1.0, init=3.0, active=[True, False])
    assert duals.multipliers.tolist() == [3.0, 0.0]
    assert duals.accumulate(torch.tensor([2.0, 2.0, 2.0]), 1) is True
    duals.step()  # slacks 2 − 1 = 1 on both
    duals.accumulate(torch.tensor([2.0, 2.0, 2.0]), 1)
    duals.step()
    assert duals.multipliers.tolist() == [5.0, 0.0] and duals.num_steps == 2


@pytest.mark.parametrize("make,message", [
    (lambda: DualVariables(0, alpha=0.1, lr=1.0), "`num_constraints` must be at least 1, got 0."),
    (lambda: DualVariables(2, alpha=0.1, lr=1.0, active=[True]), "`active` must hold 2 flags, got shape (1,)."),
    (lambda: DualVariables(2, alpha=0.1, lr=1.0).accumulate(torch.ones(2), 1), "Expected 3 layer losses, got 2."),
])  # fmt: skip
def test_bad_shapes_refused_with_their_message(make, message):
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        make()


def test_a_state_with_many_bad_entries_names_the_first_ten():
    state = DualVariables(12, alpha=0.1, lr=1.0).state_dict()
    state["multipliers"][:] = float("nan")
    with pytest.raises(ValueError, match=re.escape("(entries [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);")):
        DualVariables(12, alpha=0.1, lr=1.0).load_state_dict(state)


# --- the problem ---


def test_documented_defaults():
    p = LayerwiseDescentProblem(3)
    assert (p.alpha, p.duals.lr, p.duals.multipliers.tolist(), p.layer_sampling, p.seed) == (
        0.1, 0.01, [0.0, 0.0, 0.0], "weighted", 42)  # fmt: skip
    assert p.duals.active.tolist() == [True] * 3
    masked = LayerwiseDescentProblem(3, active=[True, False, True], dual_lr=1.0, alpha=0.5)
    masked.lagrangian_terms(torch.tensor([2.0, 2.0, 2.0, 2.0]), step=1)
    masked.dual_step(1)
    assert masked.duals.multipliers.tolist() == [1.0, 0.0, 1.0]  # slacks 2 − 1 = 1, the middle one not enforced


def test_layer_weights_without_the_stop_gradient():
    """∂𝓛/∂ℓ_l = λ_l − (1 − α) λ_{l+1} for l < L, with λ_0 = 0 and no λ_{L+1}: L = 3, α = 0.5, λ = (2, 4, 6)."""
    p = LayerwiseDescentProblem(3, alpha=0.5, detach_previous_loss=False)
    p.duals.multipliers = torch.tensor([2.0, 4.0, 6.0], dtype=torch.float64)
    assert p.layer_weights() == [0 - 0.5 * 2, 2 - 0.5 * 4, 4 - 0.5 * 6]


@pytest.mark.parametrize("num_layers,weights,terms", [(1, [0.0], 0.0), (2, [0.0, 0.3], 0.3 * 5.0),
                                                      (3, [0.0, 0.15, 0.15], 0.3 * (5.0 + 3.0) / 2)])  # fmt: skip
def test_deep_supervision_at_small_depths(num_layers, weights, terms):
    """Deep supervision's w · mean(ℓ_1 … ℓ_{L−1}): nothing for L = 1 (no intermediate layer), ℓ_1 alone for L = 2."""
    p = LayerwiseDescentProblem(num_layers, constrained=False, deep_supervision_weight=0.3)
    assert p.layer_weights() == pytest.approx(weights)
    losses = torch.tensor([9.0, 5.0, 3.0, 1.0][: num_layers + 1])
    assert p.lagrangian_terms(losses, step=0).item() == pytest.approx(terms)


def test_the_gradient_comes_from_the_gradient_sample():
    """Value on ℓ (the value sample), gradient on ℓ' (the gradient's larger sample): L = 2, α = 0.5, λ = (1, 3)."""
    p = LayerwiseDescentProblem(2, alpha=0.5)
    p.duals.multipliers = torch.tensor([1.0, 3.0], dtype=torch.float64)
    values = torch.tensor([4.0, 3.0, 1.0], requires_grad=True)
    grads = torch.tensor([8.0, 8.0, 8.0], requires_grad=True)
    terms = p.lagrangian_terms(values, step=0, grad_layer_losses=grads)
    assert terms.item() == pytest.approx(1 * (3 - 2) + 3 * (1 - 1.5))  # Σ λ_l s_l on the values
    terms.backward()
    assert values.grad is None or values.grad.abs().sum().item() == 0.0
    assert grads.grad.tolist() == [0.0, 1.0, 3.0]  # λ_1 on ℓ_1, λ_2 on ℓ_2 (the stop-gradient leaves ℓ_0 out)


def test_rotation_factor_and_the_sample_follows_lambda():
    """Rotation: m of the K weighted layers per step, each with factor K/m; the sample is λ's of the moment."""
    p = LayerwiseDescentProblem(4, layer_sample_size=2, layer_sampling="rotation")
    p.duals.multipliers = torch.tensor([1.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    assert p.sample_layers(0) == {1: 1.5, 2: 1.5} and p.sample_layers(1) == {3: 1.5, 1: 1.5}
    p.duals.multipliers = torch.tensor([0.0, 1.0, 1.0, 1.0], dtype=torch.float64)  # layer 1 weighs nothing now
    assert p.sample_layers(0) == {2: 1.0, 3: 1.0}
    p.duals.multipliers = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)  # same step; c_l = λ_l: ℓ_3 only
    assert p.sample_layers(0) == {3: 1.0}


def test_metrics_of_a_batch_and_a_tight_constraint():
    p = LayerwiseDescentProblem(2, alpha=0.5)
    metrics = p.metrics(torch.tensor([2.0, 1.0, 0.75]))  # slacks 1 − 1 = 0 (met, tightly), 0.75 − 0.5 = 0.25
    assert metrics == {"layer_loss/0": 2.0, "layer_loss/1": 1.0, "layer_loss/2": 0.75, "slack/1": 0.0,
                       "slack/2": 0.25, "constraint_satisfaction": 0.5, "descent_ratio_mean": (0.5 + 0.75) / 2}


def test_restore_names_its_source_and_the_warning_points_at_the_caller():
    p = LayerwiseDescentProblem(2)
    with pytest.raises(ValueError, match="^checkpoint-9/trainer_state.json: checkpoint holds 3 dual"):
        p.load_state_dict(LayerwiseDescentProblem(3).state_dict(), source="checkpoint-9/trainer_state.json")
    with pytest.warns(RuntimeWarning) as record:
        p.lagrangian_terms(torch.tensor([1.0, float("nan"), 1.0]), step=3)
    # stacklevel: attributed to the caller's code, not to the line in problem.py that warns
    assert not record[0].filename.endswith(("problem.py", "warnings.py"))


# --- layer sampling ---


def test_inclusion_probabilities_when_every_weighted_layer_fits():
    assert inclusion_probabilities([0.5, 0.0, 0.25], 2) == [1.0, 0.0, 1.0]


def test_rotation_windows_by_hand():
    assert [rotation([1, 2, 3, 4, 5], 2, p) for p in range(3)] == [[1, 2], [3, 4], [5, 1]]


@pytest.mark.parametrize("seed,step", [(0, 0), (42, 7), (3, 1_000_000), (2**63 // 1_000_003 + 5, 11)])
def test_step_generator_is_the_documented_seed(seed, step):
    """The generator of (seed, step) is torch's seeded with (seed · 1 000 003 + step) mod (2^63 − 1)."""
    expected = torch.Generator().manual_seed((seed * 1_000_003 + step) % (2**63 - 1))
    assert torch.equal(torch.rand(4, generator=step_generator(seed, step)), torch.rand(4, generator=expected))


# --- the input noise ---


class Toy(nn.Module):
    """An embedding whose token 0 (padding) is 100 times larger than the others, read by a forward that takes the
    attention mask as a keyword (as a transformers model does)."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(6, 4)
        with torch.no_grad():
            self.embed.weight[0] = 100.0

    def get_input_embeddings(self):
        return self.embed

    def forward(self, input_ids, attention_mask=None):
        return self.embed(input_ids)


def test_defaults_and_refusals():
    noise = EmbeddingNoise()
    assert (noise.gamma, noise.mean, noise.training_only) == (0.0, 0.0, False)
    toy = Toy()
    noise.attach(toy)
    with pytest.raises(RuntimeError, match=r"^EmbeddingNoise is already attached; call remove\(\) first\.$"):
        noise.attach(toy)

    class NoEmbeddings(nn.Module):
        def get_input_embeddings(self):
            return None

    with pytest.raises(ValueError, match="^NoEmbeddings has no input embeddings to perturb.$"):
        EmbeddingNoise(gamma=1.0).attach(NoEmbeddings())


def test_training_only_and_a_pure_mean_shift():
    toy, ids = Toy(), torch.tensor([[1, 2, 3]])
    clean = toy(ids).detach()
    noise = EmbeddingNoise(gamma=1.0, training_only=True).attach(toy)
    toy.eval()
    assert torch.equal(toy(ids), clean)
    toy.train()
    assert not torch.equal(toy(ids), clean)
    noise.remove()
    EmbeddingNoise(gamma=0.0, mean=1.0).attach(toy)
    assert torch.equal(toy(ids), clean + 1.0)


def test_explicit_modules_and_the_mask_of_a_cached_step():
    """Hooks on the modules given; in a cached generation step (a mask longer than the new tokens) σ_x is taken over
    the new tokens the mask's last columns mark as real: here tokens 2 and 3, not the padding token 0."""
    toy, other = Toy(), Toy()
    noise = EmbeddingNoise(gamma=0.5).attach(toy, embeddings=other.embed, backbone=other)
    assert not toy.embed._forward_hooks and len(other.embed._forward_hooks) == 1
    assert len(other._forward_pre_hooks) == 1 and not toy._forward_pre_hooks
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0, 1, 1, 0]])  # 8 past positions, then the 3 new ones: real, real, pad
    ids = torch.tensor([[2, 3, 0]])
    clean = other.embed.weight[ids].detach()
    sigma = clean[0, :2].float().std()  # hand: the real new tokens only
    torch.manual_seed(5)
    out = other(ids, attention_mask=mask)
    torch.manual_seed(5)
    expected = clean + torch.randn_like(clean) * 0.5 * sigma
    assert torch.allclose(out, expected, atol=1e-6)
    noise.remove()


# --- the dual step on two ranks (gloo, forked in-process) ---


def _rank(rank: int, port: int, results) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        duals = DualVariables(2, alpha=0.5, lr=1.0)
        losses, tokens = [([4.0, 2.0, 1.0], 1), ([2.0, 2.0, 2.0], 3)][rank]
        duals.accumulate(torch.tensor(losses), tokens)
        results.put((rank, duals.step().tolist(), duals.multipliers.tolist()))
    finally:
        dist.destroy_process_group()


def test_two_ranks_take_the_step_of_the_pooled_tokens():
    """Rank 0 saw ℓ = (4, 2, 1) on 1 token, rank 1 ℓ = (2, 2, 2) on 3: pooled means (2.5, 2, 1.75), slacks
    (2 − 1.25, 1.75 − 1) = (0.75, 0.75) and λ = 0.75 on both ranks (alone: (0, 0) and (1, 1))."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    context = mp.get_context("fork")
    results = context.Queue()
    ranks = [context.Process(target=_rank, args=(r, port, results)) for r in range(2)]
    for process in ranks:
        process.start()
    got = sorted(results.get(timeout=120) for _ in ranks)
    for process in ranks:
        process.join(timeout=60)
    assert [p.exitcode for p in ranks] == [0, 0]
    assert got == [(0, [0.75, 0.75], [0.75, 0.75]), (1, [0.75, 0.75], [0.75, 0.75])]
