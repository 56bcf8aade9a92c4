"""The input noise γ (hf_cut/noise.py) as a training intervention: no hook left behind, and the same noise again.

The hooks are counted on every module of the model (torch's ``_forward_hooks`` / ``_forward_pre_hooks`` dicts) before
``train()``, after it, after a ``train()`` that raises mid-run, and after ``evaluate()`` with ``noise_at_eval``: the
counts must be those from before. (transformers installs recording hooks of its own, permanently, on the first forward
that asks for hidden states; one such forward runs before the first count.) The noise itself is measured from what
the first decoder layer reads during training, at learning rate 0 so the clean embeddings of the batch are known:
ε = (layer input) − (embeddings) must have mean ≈ 0 and std ≈ γ·σ_x, σ_x the std of the clean embedding entries of the
batch over its non-padding positions (docs/method.md, "Noise") — in the first ``train()`` and in a second one on the
same trainer, also after a failed run.
"""

from __future__ import annotations

import pytest
import torch
from transformers import TrainerCallback

from tests.conftest import tiny_trainer

GAMMA = 0.5


def _hooks(model) -> dict[str, tuple[int, int]]:
    """module name → (forward hooks, forward pre-hooks), for every module with any."""
    return {name: (len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()
            if m._forward_hooks or m._forward_pre_hooks}  # fmt: skip


def _hf_cut_hooks(model) -> list[str]:
    """Hooks whose function is defined in hf_cut (bound methods or closures), by module name."""
    found = []
    for name, module in model.named_modules():
        for hook in list(module._forward_hooks.values()) + list(module._forward_pre_hooks.values()):
            func = getattr(hook, "__func__", hook)
            if getattr(func, "__module__", "").startswith("hf_cut"):
                found.append(f"{name}: {getattr(func, '__qualname__', func)}")
    return found


class NoiseProbe(TrainerCallback):
    """Measures, on every training step, ε = (what decoder layer 0 reads) − (the clean embeddings of the batch) over
    the non-padding positions, and σ_x of those clean embeddings. Its own hook is added at the first step and removed
    at the end of the run, so it is never among the counted hooks."""

    def __init__(self, trainer):
        self.trainer = trainer
        self.ratios, self.means, self.handles = [], [], []

    def on_train_begin(self, args, state, control, **kwargs):
        model = self.trainer.model
        embeddings = model.get_input_embeddings()
        captured = {}

        def inputs(module, args, kwargs):
            captured["ids"], captured["mask"] = kwargs["input_ids"], kwargs.get("attention_mask")

        def layer0(module, args, kwargs):
            hidden = (args[0] if args else kwargs["hidden_states"]).detach()
            ids, mask = captured["ids"], captured["mask"]
            with torch.no_grad():
                clean = embeddings.weight[ids]  # a plain lookup: no module call, no hook
            real = torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool()
            eps = (hidden - clean)[real]
            self.ratios.append((eps.std() / clean[real].std()).item())
            self.means.append((eps.mean() / (eps.std() / eps.numel() ** 0.5)).item())  # in standard errors

        self.handles = [model.register_forward_pre_hook(inputs, with_kwargs=True),
                        model.model.layers[0].register_forward_pre_hook(layer0, with_kwargs=True)]  # fmt: skip

    def on_train_end(self, args, state, control, **kwargs):
        for handle in self.handles:
            handle.remove()
        self.handles = []


class FailAfterFirstStep(TrainerCallback):
    def __init__(self):
        self.armed = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.armed and state.global_step == 1:
            raise RuntimeError("failing on purpose after step 1")
        return control


def _trainer(tmp_path, tokenizer, dataset, **overrides):
    trainer = tiny_trainer(tmp_path, tokenizer, dataset, noise_gamma=GAMMA, max_steps=2, learning_rate=0.0,
                           per_device_train_batch_size=8, **overrides)  # fmt: skip
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():  # transformers' own recording hooks, installed once by the first hidden-states forward
        trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
    return trainer


def _check_noise(probe, steps):
    assert len(probe.ratios) == steps
    for ratio, mean in zip(probe.ratios, probe.means):
        assert ratio == pytest.approx(GAMMA, rel=0.1)  # std(ε) ≈ γ·σ_x
        assert abs(mean) < 5  # mean μ = 0, within 5 standard errors
    probe.ratios.clear()
    probe.means.clear()


def test_train_leaves_no_hook_and_a_second_train_perturbs_alike(tmp_path, tokenizer, dataset):
    trainer = _trainer(tmp_path, tokenizer, dataset)
    before = _hooks(trainer.model)
    assert _hf_cut_hooks(trainer.model) == []
    probe = NoiseProbe(trainer)
    trainer.add_callback(probe)
    seen_attached = []
    trainer.add_callback(type("Seen", (TrainerCallback,), {
        "on_step_begin": lambda self, *a, **k: seen_attached.append(len(_hf_cut_hooks(trainer.model)))})())  # fmt: skip

    trainer.train()
    assert seen_attached == [2, 2]  # during training: hf-cut's noise hook and its mask pre-hook
    assert _hooks(trainer.model) == before and _hf_cut_hooks(trainer.model) == []
    _check_noise(probe, steps=2)

    trainer.train()  # the same trainer again: perturbed as the first run, and clean afterwards
    assert seen_attached == [2, 2, 2, 2]
    assert _hooks(trainer.model) == before and _hf_cut_hooks(trainer.model) == []
    _check_noise(probe, steps=2)

    # evaluate() under the training noise (noise_at_eval) also leaves nothing behind
    trainer.eval_dataset = trainer.train_dataset.select(range(8))
    trainer.args.noise_at_eval = True
    trainer.evaluate()
    assert _hooks(trainer.model) == before and _hf_cut_hooks(trainer.model) == []


def test_train_that_raises_leaves_no_hook_and_the_next_train_perturbs(tmp_path, tokenizer, dataset):
    trainer = _trainer(tmp_path, tokenizer, dataset)
    before = _hooks(trainer.model)
    probe = NoiseProbe(trainer)
    failing = FailAfterFirstStep()
    trainer.add_callback(probe)
    trainer.add_callback(failing)
    with pytest.raises(RuntimeError, match="failing on purpose"):
        trainer.train()
    probe.on_train_end(None, None, None)  # the Trainer never reached on_train_end: remove the probe's own hooks
    assert _hooks(trainer.model) == before and _hf_cut_hooks(trainer.model) == []
    _check_noise(probe, steps=1)  # the step that ran was perturbed

    failing.armed = False
    trainer.train()
    assert _hooks(trainer.model) == before and _hf_cut_hooks(trainer.model) == []
    _check_noise(probe, steps=2)
