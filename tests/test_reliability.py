"""Reliability: a non-finite layer loss never reaches the dual variables; a checkpoint with non-finite duals is refused."""

import math

import pytest
import torch

from hf_cut.constrained import DUALS_NAME
from hf_cut.duals import DualVariables
from tests.conftest import tiny_trainer

NAN, INF = float("nan"), float("inf")


def test_nonfinite_micro_batches_are_left_out_by_hand():
    duals = DualVariables(2, alpha=0.5, lr=0.1)
    assert duals.accumulate(torch.tensor([4.0, 3.0, 1.0]), 3)
    assert not duals.accumulate(torch.tensor([4.0, NAN, 1.0]), 5)
    assert not duals.accumulate(torch.tensor([4.0, 2.0, INF]), 5)
    assert not duals.accumulate(torch.tensor([4.0, 2.0, 1.0]), INF)
    assert duals.accumulate(torch.tensor([2.0, 3.0, 5.0]), 1)
    duals.step()
    # token-weighted means of the two clean micro-batches: ℓ = (3·[4,3,1] + [2,3,5]) / 4 = [3.5, 3, 2]
    # slack s_l = ℓ_l − 0.5 ℓ_{l−1} = [3 − 1.75, 2 − 1.5] = [1.25, 0.5]; λ = 0.1 s
    assert duals.multipliers.tolist() == pytest.approx([0.125, 0.05])
    assert duals.skipped_nonfinite == 3 and duals.num_steps == 1

    # a step that saw only non-finite micro-batches keeps λ (and is not counted as a step)
    assert not duals.accumulate(torch.tensor([NAN, NAN, NAN]), 2)
    duals.step()
    assert duals.multipliers.tolist() == pytest.approx([0.125, 0.05]) and duals.num_steps == 1
    assert duals.skipped_nonfinite == 4 and duals.state_dict()["skipped_nonfinite"] == 4


@pytest.mark.parametrize("key", ["multipliers", "last_slack", "loss_sums"])
def test_checkpoint_with_nonfinite_duals_is_refused_naming_the_file(key):
    duals = DualVariables(3, alpha=0.1, lr=0.1)
    state = duals.state_dict()
    state[key] = state[key].clone()
    state[key][1] = NAN
    with pytest.raises(ValueError, match=rf"ckpt/dual_variables.pt: .*`{key}` holds non-finite values \(entries \[1\]\)"):
        DualVariables(3, alpha=0.1, lr=0.1).load_state_dict(state, source="ckpt/dual_variables.pt")


def _poison(model, layer: int, on_call: int):
    """A forward hook that turns decoder layer ``layer``'s output into NaN on its ``on_call``-th training call."""
    calls = {"n": 0}

    def hook(module, args, output):
        if not module.training:
            return None
        calls["n"] += 1
        if calls["n"] != on_call:
            return None
        if isinstance(output, tuple):
            return (output[0] * NAN, *output[1:])
        return output * NAN

    return model.model.layers[layer].register_forward_hook(hook)


def test_trainer_drops_the_poisoned_micro_batch_only(tmp_path, tokenizer, dataset):
    """Two steps of two micro-batches; the first micro-batch of step 2 is poisoned at decoder layer 1. λ after step 2
    must be λ_1 + η · slack(clean micro-batch of step 2), from the losses the trainer measured."""
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=2, gradient_accumulation_steps=2,
                           per_device_train_batch_size=2, dual_lr=0.5, learning_rate=1e-3)  # fmt: skip
    seen = []
    accumulate = trainer.duals.accumulate

    def spy(losses, count):
        seen.append((losses.detach().double().clone(), float(count)))
        return accumulate(losses, count)

    trainer.duals.accumulate = spy
    handle = _poison(trainer.model, layer=1, on_call=3)
    with pytest.warns(RuntimeWarning, match=r"global_step 1: non-finite layer losses at layers \[2, 3\]"):
        trainer.train()
    handle.remove()

    assert len(seen) == 4 and not torch.isfinite(seen[2][0]).all() and torch.isfinite(seen[3][0]).all()
    assert torch.isfinite(seen[2][0][:2]).all()  # ℓ_0, ℓ_1 come before the poisoned layer

    def slack(losses):
        return losses[1:] - 0.9 * losses[:-1]

    (l1, n1), (l2, n2) = seen[0], seen[1]
    lam = torch.clamp(0.5 * slack((l1 * n1 + l2 * n2) / (n1 + n2)), min=0)
    lam = torch.clamp(lam + 0.5 * slack(seen[3][0]), min=0)
    assert torch.isfinite(trainer.dual_variables).all()
    assert torch.allclose(trainer.dual_variables.double(), lam, atol=1e-5)
    logged = [h for h in trainer.state.log_history if "dual/skipped_nonfinite" in h]
    assert [h["dual/skipped_nonfinite"] for h in logged[:2]] == [0.0, 1.0]


def test_resume_refuses_a_checkpoint_with_nan_duals(tmp_path, tokenizer, dataset):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, max_steps=2, save_strategy="steps", save_steps=2)
    trainer.train()
    path = tmp_path / "out" / "checkpoint-2" / DUALS_NAME
    state = torch.load(path, weights_only=True)
    state["multipliers"][0] = math.nan
    torch.save(state, path)
    again = tiny_trainer(tmp_path / "again", tokenizer, dataset, max_steps=3)
    with pytest.raises(ValueError, match=rf"{path}: .*non-finite"):
        again.train(resume_from_checkpoint=str(path.parent))
