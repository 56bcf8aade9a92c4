"""`layer_loss_budget` resolved into layers and token shares (hf_cut.cost.allocate), against the rule worked by hand:
u = B·plain/R readout units per token, ¾ of them on the gradient (m = ⌊¾u/4⌋ layers, at least 1 and at most L−1, on a
share f = ¾u/4m of the tokens, capped at 1, at least 1/256), ¼ on the values of the other L−m layers (share d, at most
f), and the FLOPs added: (4·m·f + (L−m)·d)·R/plain."""

from __future__ import annotations

import pytest

from hf_cut.cost import LayerBudget, allocate


@pytest.mark.parametrize("budget,num_layers,expected", [
    # u = 1: ¾ on one layer (f = 0.75/4), ¼ on the 3 others (d = 0.25/3); adds (0.75 + 0.25)·0.1
    (0.1, 4, LayerBudget(1, 0.1875, 0.25 / 3, 0.1)),
    # u = 20: m = min(L−1 = 3, ⌊15/4⌋ = 3) on every token, the last layer's value on every token: (12 + 1)·0.1
    (2.0, 4, LayerBudget(3, 1.0, 1.0, 1.3)),
    # L = 2: a single weighted layer (ℓ_1), however large the budget: (4 + 1)·0.1
    (2.0, 2, LayerBudget(1, 1.0, 1.0, 0.5)),
    # L = 1: m = 1 = L, no layer left without a gradient, d = f: 4·0.1
    (1.0, 1, LayerBudget(1, 1.0, 1.0, 0.4)),
    # u = 8, L = 6: one layer on every token (6/4 > 1), the 5 others on 2/5 of them: (4 + 2)·0.1
    (0.8, 6, LayerBudget(1, 1.0, 0.4, 0.6)),
    # u = 0.01: both shares at their floor 1/256: (4 + 3)/256·0.1
    (0.001, 4, LayerBudget(1, 1 / 256, 1 / 256, 0.7 / 256)),
])  # fmt: skip
def test_allocation_by_hand(budget, num_layers, expected):
    got = allocate(budget, plain=100.0, readout=10.0, num_layers=num_layers)
    assert got.layer_sample_size == expected.layer_sample_size
    assert got.token_fraction == pytest.approx(expected.token_fraction, rel=1e-12)
    assert got.dual_token_fraction == pytest.approx(expected.dual_token_fraction, rel=1e-12)
    assert got.extra == pytest.approx(expected.extra, rel=1e-12)
