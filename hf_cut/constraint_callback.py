"""The constrained problem's life in a ``transformers`` training loop, through its public callback API.

:class:`ConstraintCallback` takes the dual step after every optimizer step (``on_step_end``: after the primal step,
before the Trainer logs or saves), exports the problem's state to every checkpoint's ``trainer_state.json`` as an
``ExportableState`` (``stateful_callbacks``), and restores it when a run resumes (``on_train_begin``): from the
``dual_variables.pt`` file the trainer's ``save_model`` writes beside the weights when the checkpoint has it (checked
against the exported state), else from ``trainer_state.json``. Checkpoints of hf-cut 0.1, which carry the file only,
still resume.
:class:`MetricWindow` averages the per-layer metrics over a logging window.
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import ExportableState

from .problem import LayerwiseDescentProblem

__all__ = ["DUALS_NAME", "ConstraintCallback", "MetricWindow", "load_duals_file", "save_duals_file"]

# the dual variables beside a saved model's weights (and, before 0.2, the only record of them in a checkpoint)
DUALS_NAME = "dual_variables.pt"


def _jsonable(state: dict) -> dict:
    """A state dict with its tensors as lists (float64 values survive JSON exactly: ``repr`` round-trips)."""
    return {key: value.tolist() if isinstance(value, torch.Tensor) else value for key, value in state.items()}


def load_duals_file(path: str) -> dict:
    """The problem state a ``dual_variables.pt`` file holds."""
    return torch.load(path, weights_only=True)


def save_duals_file(problem: LayerwiseDescentProblem, folder: str) -> None:
    """``folder/dual_variables.pt``: the problem's state, beside a saved model's weights."""
    os.makedirs(folder, exist_ok=True)
    torch.save(problem.state_dict(), os.path.join(folder, DUALS_NAME))


class ConstraintCallback(TrainerCallback, ExportableState):
    """The dual step, and the problem's state in checkpoints.

    Args:
        problem: the :class:`~hf_cut.problem.LayerwiseDescentProblem` being trained. ``None`` only for an instance
            ``transformers`` re-creates from a checkpoint (``restore_callback_states_from_checkpoint``); the trainer
            then hands it the problem before the first step (:meth:`adopt`).
        device: where the dual step's all-reduce runs (the rank's accelerator), a callable returning it, or None.
    """

    def __init__(self, problem: LayerwiseDescentProblem | None = None, device=None) -> None:
        self.problem = problem
        self.device = device
        self.checkpoint: str | None = None  # the folder a run resumes from, set by the trainer's train()
        self.problem_state: dict | None = None  # a restored state not yet loaded (a re-created instance)

    def state(self) -> dict:
        saved = None if self.problem is None else _jsonable(self.problem.state_dict())
        return {"args": {}, "attributes": {"problem_state": saved}}

    def adopt(self, problem: LayerwiseDescentProblem, device=None) -> None:
        """Take over ``problem`` (this instance was re-created by ``transformers``), loading the state it carries."""
        self.problem, self.device = problem, device
        if self.problem_state is not None:
            self.problem.load_state_dict(self.problem_state, source="trainer_state.json")
            self.problem_state = None

    def on_train_begin(self, args, state, control, **kwargs):
        name = type(self).__name__
        saved = state.stateful_callbacks.get(name)
        if saved is None:  # a state resumed from a checkpoint without this callback: the next save writes it
            state.stateful_callbacks[name] = self.state()
        if self.problem is None or self.checkpoint is None:
            return control
        saved = saved[0] if isinstance(saved, list) else saved
        problem_state = (saved or {}).get("attributes", {}).get("problem_state")
        file = os.path.join(self.checkpoint, DUALS_NAME)
        if os.path.isfile(file):  # beside the weights (the only record in checkpoints of hf-cut 0.1)
            in_file = load_duals_file(file)
            self.problem.load_state_dict(in_file, source=file)
            if problem_state is not None and _jsonable(in_file) != problem_state:
                raise ValueError(
                    f"{file} and the state in {os.path.join(self.checkpoint, 'trainer_state.json')} disagree: "
                    f"resume from a checkpoint written in one piece, or delete {DUALS_NAME} to use trainer_state.json."
                )
        elif problem_state is not None:
            self.problem.load_state_dict(problem_state, source=os.path.join(self.checkpoint, "trainer_state.json"))
        elif self.problem.constrained:
            warnings.warn(f"{file} not found: the dual variables restart from `dual_init`.", stacklevel=2)
        return control

    def on_push_begin(self, args, state, control, **kwargs):
        # a push from a checkpoint copies only the model's files to output_dir: the duals of that checkpoint join them
        if self.problem is not None and args.should_save:
            save_duals_file(self.problem, args.output_dir)
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if self.problem is not None:
            device = self.device() if callable(self.device) else self.device
            self.problem.dual_step(state.global_step, device=device)
        return control


class MetricWindow:
    """Per-layer metrics of the batches since the last log, per mode (``"train"``, ``"eval"``), averaged when
    popped; the last window's layer losses are kept for the model card."""

    def __init__(self) -> None:
        self.values: dict[str, dict[str, list[float]]] = {"train": defaultdict(list), "eval": defaultdict(list)}
        self.last_layer_losses: dict[str, dict[int, float]] = {"train": {}, "eval": {}}

    def add(self, mode: str, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            self.values[mode][key].append(value)

    def pop(self, mode: str) -> dict[str, float]:
        """The window's means (name → value), then an empty window."""
        means = {key: sum(values) / len(values) for key, values in self.values[mode].items() if values}
        for key, value in means.items():
            if key.startswith("layer_loss/"):
                self.last_layer_losses[mode][int(key.split("/")[1])] = value
        self.values[mode].clear()
        return means
