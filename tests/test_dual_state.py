"""The dual variables' state as a checkpoint holds it: restored exactly and as a copy, an older state without the
skip counter, and a state that does not fit or is not finite refused with the exact message naming its source."""

from __future__ import annotations

import re

import pytest
import torch

from hf_cut.duals import DualVariables
from hf_cut.problem import LayerwiseDescentProblem


def stepped() -> DualVariables:
    """λ after one hand-checked step, then a micro-batch accumulated but not yet stepped and one skipped."""
    duals = DualVariables(2, alpha=0.5, lr=2.0)
    duals.accumulate(torch.tensor([4.0, 3.0, 1.0]), 2)  # slacks: 3 − 0.5·4 = 1, 1 − 0.5·3 = −0.5
    duals.step()
    assert duals.multipliers.tolist() == [2.0, 0.0]  # [0 + 2·1]₊, [0 + 2·(−0.5)]₊
    duals.accumulate(torch.tensor([2.0, 2.0, 2.0]), 3)
    duals.accumulate(torch.tensor([1.0, float("nan"), 1.0]), 1)
    return duals


def test_a_restored_state_steps_as_the_original():
    original, restored = stepped(), DualVariables(2, alpha=0.5, lr=2.0)
    restored.load_state_dict(original.state_dict())
    assert (restored.num_steps, restored.skipped_nonfinite) == (1, 1)
    assert restored.last_slack.tolist() == [1.0, -0.5]
    # the accumulated micro-batch goes into the next step: slacks 2 − 1 = 1 and 1, so λ = [2 + 2, 0 + 2]
    assert restored.step().tolist() == original.step().tolist() == [1.0, 1.0]
    assert restored.multipliers.tolist() == original.multipliers.tolist() == [4.0, 2.0]


def test_the_restored_state_is_a_copy():
    state = stepped().state_dict()
    duals = DualVariables(2, alpha=0.5, lr=2.0)
    duals.load_state_dict(state)
    for key in ("multipliers", "last_slack", "loss_sums", "num_tokens"):
        state[key].fill_(123.0)  # the caller's tensors change afterwards (a reused state dict)
    assert duals.multipliers.tolist() == [2.0, 0.0] and duals.last_slack.tolist() == [1.0, -0.5]
    assert duals.step().tolist() == [1.0, 1.0]


def test_an_older_state_without_the_skip_counter():
    state = stepped().state_dict()
    del state["skipped_nonfinite"]
    duals = DualVariables(2, alpha=0.5, lr=2.0)
    duals.load_state_dict(state)
    assert duals.skipped_nonfinite == 0 and duals.num_steps == 1


@pytest.mark.parametrize("source,prefix", [("checkpoint-4/dual_variables.pt", "checkpoint-4/dual_variables.pt: "),
                                           (None, "")])  # fmt: skip
def test_a_state_of_another_depth_is_refused(source, prefix):
    duals = DualVariables(3, alpha=0.5, lr=2.0)
    message = f"{prefix}checkpoint holds 2 dual variables, the model has 3 constraints."
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        duals.load_state_dict(stepped().state_dict(), source=source)
    assert duals.multipliers.tolist() == [0.0, 0.0, 0.0]  # nothing restored


@pytest.mark.parametrize("key,index", [("multipliers", 1), ("last_slack", 0), ("loss_sums", 2), ("num_tokens", 0)])
def test_a_non_finite_state_is_refused(key, index):
    state = stepped().state_dict()
    state[key].view(-1)[index] = float("inf")
    message = (f"trainer_state.json: the dual variables' `{key}` holds non-finite values (entries [{index}]); "
               "refusing to resume from it. Resume from an earlier checkpoint, or delete the file to restart λ at "
               "`dual_init`.")  # fmt: skip
    duals = DualVariables(2, alpha=0.5, lr=2.0)
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        duals.load_state_dict(state, source="trainer_state.json")
    assert duals.multipliers.tolist() == [0.0, 0.0] and duals.num_steps == 0  # nothing restored


def test_the_problem_redraws_its_layer_sample_after_a_restore():
    """The layer sample is drawn from (seed, step, λ): after λ is restored the sample is λ's, not a cached one."""
    kwargs = dict(alpha=0.5, dual_lr=2.0, layer_sample_size=1, seed=3)
    restored, original = LayerwiseDescentProblem(3, **kwargs), LayerwiseDescentProblem(3, **kwargs)
    original.duals.multipliers = torch.tensor([0.0, 5.0, 0.0], dtype=torch.float64)
    before = restored.sample_layers(1)  # cached for λ = 0
    restored.load_state_dict(original.state_dict())
    assert restored.sample_layers(1) == original.sample_layers(1)
    assert before != original.sample_layers(1)


def test_a_non_finite_micro_batch_is_named_in_the_warning():
    problem = LayerwiseDescentProblem(2, alpha=0.5, dual_lr=2.0)
    expected = ("global_step 12: non-finite layer losses at layers [0, 2]; this micro-batch is left out of the dual "
                "step (logged as dual/skipped_nonfinite).")  # fmt: skip
    with pytest.warns(RuntimeWarning, match=f"^{re.escape(expected)}$"):
        problem.lagrangian_terms(torch.tensor([float("nan"), 1.0, float("inf")]), step=12)
    expected = expected.replace("at layers [0, 2]", "at layers (token count)")
    with pytest.warns(RuntimeWarning, match=f"^{re.escape(expected)}$"):
        problem.lagrangian_terms(torch.tensor([2.0, 1.0, 0.5]), step=12, count=float("nan"))
    assert problem.duals.skipped_nonfinite == 2
