"""What both constrained trainers share: wiring of the constrained problem into a ``transformers.Trainer``.

:class:`ConstrainedMixin` goes first in the bases of a trainer (``class T(ConstrainedMixin, SFTTrainer)``). It owns
no mathematics: the problem (:class:`~hf_cut.problem.LayerwiseDescentProblem`: the Lagrangian's terms, the layer
sample, the slacks, the duals) and the noise (:class:`~hf_cut.noise.EmbeddingNoise`) are plain objects, and the mixin
connects them through the Trainer's public methods only: ``train`` / ``evaluate`` / ``predict`` (the noise hook),
``log`` (the per-layer metrics, averaged over the logging window), ``save_model`` (the duals beside the weights),
``create_model_card``, ``training_step`` and a :class:`~hf_cut.constraint_callback.ConstraintCallback` (the dual step,
the state in checkpoints). The trainer calls :meth:`_setup_constraints` once its model is prepared, and in
``compute_loss`` turns the layer losses its readout returned into the training loss with :meth:`_lagrangian_terms`
and into logs with :meth:`_record_layer_metrics`. The readout is the only part that knows the architecture.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os

import torch
from torch import nn
from transformers.trainer_utils import get_last_checkpoint

from .config import constrained_layer_mask, normalise_resilience, resolve_resilience
from .constraint_callback import DUALS_NAME, ConstraintCallback, MetricWindow, save_duals_file
from .cost import LayerBudget
from .duals import DualVariables
from .model_card import PAPER, base_model_id, base_model_license, complete_card, constraint_section
from .noise import EmbeddingNoise
from .problem import LayerwiseDescentProblem

__all__ = ["ConstrainedMixin", "DUALS_NAME", "check_loss_options"]


def check_loss_options(args, compute_loss_func=None) -> None:
    """``ValueError`` naming an ``SFTConfig`` / ``TrainingArguments`` option that changes the loss in a way the layer
    terms cannot follow, before anything is loaded. The status of every such option is tabled in docs/method.md."""
    layer_terms = args.constrained or args.deep_supervision_weight > 0
    what = "constrained=True" if args.constrained else f"deep_supervision_weight={args.deep_supervision_weight}"
    if layer_terms and args.label_smoothing_factor > 0:
        raise ValueError(
            f"`label_smoothing_factor` ({args.label_smoothing_factor}) is not supported with {what}: label smoothing "
            "needs every layer's full logits, which the layerwise readout never builds. Set it to 0, or train plain "
            "ERM (`constrained=False`), where the parent trainer's own smoothed loss is used."
        )
    if layer_terms and compute_loss_func is not None:
        raise ValueError(
            f"`compute_loss_func` is not supported with {what}: it is a function of the last layer's logits, and the "
            "layer terms cannot be built from it. Use `loss_type` ('nll' or 'dft'), or train plain ERM "
            "(`constrained=False`), where the parent trainer calls it."
        )
    if getattr(args, "use_liger_kernel", False):
        raise ValueError(
            "`use_liger_kernel=True` is not supported by hf-cut's trainers yet: Liger's Triton kernels do not run "
            "on the CPUs the trainers are tested on, so the layer readout has never been checked with them. Set "
            "`use_liger_kernel=False`."
        )


class ConstrainedMixin:
    """Primal–dual training of P-CUT (arXiv 2601.17257) on top of a ``transformers.Trainer`` subclass.

    Attributes:
        problem: the :class:`~hf_cut.problem.LayerwiseDescentProblem` (the Lagrangian's terms, the layer sample, the
            dual variables and their step).
        duals: ``problem.duals``, the :class:`~hf_cut.duals.DualVariables` (λ and the slack accumulated for the next
            dual step).
        noise: the :class:`~hf_cut.noise.EmbeddingNoise` hook on the input embeddings (γ = ``args.noise_gamma``),
            attached while ``train()`` runs and acting on its training forwards only (``noise_at_eval``: also on
            evaluation and prediction).
        cost: the resolved :class:`~hf_cut.cost.LayerBudget`.
        layer_metrics: the :class:`~hf_cut.constraint_callback.MetricWindow` of the per-layer metrics not logged yet.
        num_layers: L, the number of constraints.
    """

    _paper = PAPER

    def _setup_constraints(self, base_model: nn.Module, num_layers: int) -> None:
        args = self.args
        # β: "auto" → 1/L (the config checked everything it could without L)
        self.resilience_coef = resolve_resilience(normalise_resilience(args.resilience_coef), num_layers)
        self.problem = LayerwiseDescentProblem(
            num_layers,
            constrained=args.constrained,
            alpha=args.descent_alpha,
            dual_lr=args.dual_lr,
            dual_init=args.dual_init,
            resilience_coef=self.resilience_coef,
            active=constrained_layer_mask(getattr(args, "constrained_layers", "all"), num_layers),
            detach_previous_loss=args.detach_previous_loss,
            deep_supervision_weight=args.deep_supervision_weight,
            layer_sampling=args.layer_sampling,
            layer_loss_interval=args.layer_loss_interval,
            dual_update_interval=args.dual_update_interval,
            seed=args.seed,
        )
        # attached by train() (and by evaluate() / predict() with `noise_at_eval`), removed when they return
        self.noise = EmbeddingNoise(args.noise_gamma, args.noise_mean, training_only=not args.noise_at_eval)
        self.noise_target = base_model
        self.constraint_callback = ConstraintCallback(self.problem, device=lambda: self.accelerator.device)
        self.add_callback(self.constraint_callback)
        # the cost options as given (a causal-LM trainer resolves `layer_loss_budget` into them, see hf_cut.cost)
        fraction = 1.0 if args.layer_loss_token_fraction is None else args.layer_loss_token_fraction
        dual = fraction if args.dual_token_fraction is None else args.dual_token_fraction
        self.cost = LayerBudget(args.layer_sample_size, fraction, dual)
        self.layer_metrics = MetricWindow()

    @property
    def num_layers(self) -> int:
        return self.problem.num_layers

    @property
    def duals(self) -> DualVariables:
        return self.problem.duals

    @duals.setter
    def duals(self, value: DualVariables) -> None:
        self.problem.duals = value

    @property
    def cost(self) -> LayerBudget:
        return self._cost

    @cost.setter
    def cost(self, value: LayerBudget) -> None:
        self._cost = value
        self.problem.layer_sample_size = value.layer_sample_size

    @contextlib.contextmanager
    def _noise_attached(self, wanted: bool = True):
        """The noise hook on the model for the duration of the block (when ``wanted`` and not already on)."""
        attach = wanted and not self.noise.attached
        if attach:
            self.noise.attach(self.noise_target)
        try:
            yield
        finally:
            if attach:
                self.noise.remove()

    def train(self, resume_from_checkpoint: str | bool | None = None, *args, **kwargs):
        """``Trainer.train`` with the embedding noise on its training forwards; the hook is removed when it returns or
        raises, so the returned (and saved) model is the plain model. A resumed run restores the problem's state."""
        checkpoint = resume_from_checkpoint
        if checkpoint is True:  # as Trainer.train resolves it (it raises the error when there is none)
            checkpoint = get_last_checkpoint(self.args.output_dir)
        self.constraint_callback.checkpoint = checkpoint if isinstance(checkpoint, str) else None
        with self._noise_attached():
            return super().train(resume_from_checkpoint, *args, **kwargs)

    def _adopt_recreated_callback(self) -> None:
        """`restore_callback_states_from_checkpoint` makes transformers re-create the callback from its exported state,
        without the problem: hand it over (and the state it carries) before the first step or evaluation."""
        for callback in self.callback_handler.callbacks:
            if isinstance(callback, ConstraintCallback) and callback.problem is None:
                callback.adopt(self.problem, device=lambda: self.accelerator.device)
                self.constraint_callback = callback

    def training_step(self, *args, **kwargs):
        self._adopt_recreated_callback()
        return super().training_step(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """``Trainer.evaluate`` on clean embeddings, or under the training noise with ``noise_at_eval``."""
        self._adopt_recreated_callback()
        self.layer_metrics.pop("eval")  # what an earlier predict() left
        with self._noise_attached(self.args.noise_at_eval):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        """``Trainer.predict`` on clean embeddings, or under the training noise with ``noise_at_eval``."""
        with self._noise_attached(self.args.noise_at_eval):
            try:
                return super().predict(*args, **kwargs)
            finally:
                self.layer_metrics.pop("eval")  # predict() does not log: its batches are not an evaluation's

    @property
    def dual_variables(self) -> torch.Tensor:
        """λ_1 … λ_L, one float per constraint (a copy)."""
        return self.duals.multipliers.float().clone()

    def _loss_is_parents(self) -> bool:
        """Does the parent trainer's own loss stand in for the layerwise one? For plain ERM (no layer term in the loss)
        with an option only that loss implements (label smoothing, a ``compute_loss_func``): the loss is then exactly
        ``SFTTrainer``'s / ``Trainer``'s, and the layers are scored without grad for the logs."""
        args = self.args
        if self.problem.has_layer_terms:
            return False
        return args.label_smoothing_factor > 0 or getattr(self, "compute_loss_func", None) is not None

    def _measures_layers(self) -> bool:
        """Does this step compute the layer losses? Always in evaluation; in training every
        ``layer_loss_interval``-th optimizer step (the same steps on every rank, and again after a resume), and for
        plain ERM, whose layer losses are only logged, only the steps the Trainer logs."""
        if not self.model.training:
            return True
        if self.state.global_step % self.args.layer_loss_interval != 0:
            return False
        return self.problem.has_layer_terms or self._logs_next_step()

    def _logs_next_step(self) -> bool:
        """Will the optimizer step being computed be logged (``logging_strategy="steps"``)?"""
        args, state = self.args, self.state
        if str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "steps":
            return False
        every = state.logging_steps or args.logging_steps
        every = max(1, int(every if every >= 1 else math.ceil(every * state.max_steps)))
        return (state.global_step + 1) % every == 0 or (args.logging_first_step and state.global_step == 0)

    def _grad_layers(self) -> list[bool]:
        """For ``l = 0 … L−1``: does ``ℓ_l`` get a gradient on this step (weight in the loss, and sampled)?"""
        if not self.model.training:
            return [False] * self.num_layers
        return self.problem.grad_layers(self.state.global_step)

    def _lagrangian_terms(self, layer_losses: torch.Tensor, weight: torch.Tensor | float, count,
                          grad_layer_losses: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """:meth:`~hf_cut.problem.LayerwiseDescentProblem.lagrangian_terms` at this optimizer step."""
        return self.problem.lagrangian_terms(layer_losses, self.state.global_step, weight, count, grad_layer_losses)

    def _record_layer_metrics(
        self,
        mode: str,
        layer_losses: torch.Tensor,
        weight: torch.Tensor | float,
        logged: torch.Tensor | None = None,
    ) -> None:
        """Add a batch's ``layer_loss/{l}``, ``slack/{l}``, ``constraint_satisfaction`` and ``descent_ratio_mean`` to
        the logging window. Across ranks the layer losses are averaged with ``weight`` (the tokens or examples each
        rank's means are over: what the dual step weighs them by). ``logged`` replaces the layer losses in
        ``layer_loss/{l}`` (e.g. the last layer on every token)."""
        gather = self.accelerator.gather_for_metrics

        def across_ranks(values: torch.Tensor) -> torch.Tensor:
            values = values.detach()
            w = torch.as_tensor(weight, dtype=values.dtype, device=values.device).reshape(1)
            return gather((values * w)[None]).sum(0) / gather(w).sum().clamp(min=1e-12)

        sampled = across_ranks(layer_losses)
        shown = None if logged is None else across_ranks(logged)
        self.layer_metrics.add(mode, self.problem.metrics(sampled, shown))

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """The parent's ``log``, with the per-layer metrics averaged over the window since the last log and the
        dual variables now (``eval_``-prefixed in evaluation), so every ``report_to`` integration gets them."""
        mode = "train" if self.model.training else "eval"
        metrics = {**self.layer_metrics.pop(mode), **self.problem.dual_metrics()}
        prefix = ""
        if mode == "eval":  # evaluate()'s `metric_key_prefix` ("eval", "eval_<name>" for several eval sets)
            runtime = [key[: -len("runtime")] for key in logs if key.endswith("_runtime")]
            prefix = runtime[0] if runtime else "eval_"
        logs.update({f"{prefix}{key}": value for key, value in metrics.items()})
        super().log(logs, start_time)

    def save_model(self, output_dir: str | None = None, *args, **kwargs) -> None:
        """The parent's ``save_model``, plus the dual variables beside the weights (part of the trained model's
        record: the card's table reads them, a push uploads them, and every checkpoint holds them)."""
        if self.args.should_save:  # first: the parent's save_model may push the folder to the Hub
            save_duals_file(self.problem, output_dir if output_dir is not None else self.args.output_dir)
        super().save_model(output_dir, *args, **kwargs)

    def create_model_card(self, model_name: str | None = None, dataset_name: str | None = None,
                          tags: str | list[str] | None = None, license: str | None = None, **kwargs) -> None:  # fmt: skip
        """The parent trainer's model card (TRL's or transformers'; ``dataset_name`` is understood by both), its
        metadata completed (:func:`~hf_cut.model_card.complete_card`: base model, license, library, the hf-cut and
        arXiv tags, the Hub datasets) and a section with α, the final dual variables, the layer losses and the
        command, secrets and local paths left out. ``license``: the argument, else ``args.license``, else the base
        model's when known."""
        if not self.is_world_process_zero():
            return
        parent = super().create_model_card
        if "dataset_name" in inspect.signature(parent).parameters:  # TRL's
            parent(model_name=model_name, dataset_name=dataset_name, tags=tags)
        else:  # transformers.Trainer's
            parent(model_name=model_name, tags=tags, dataset=kwargs.pop("dataset", dataset_name), **kwargs)
        path = os.path.join(self.args.output_dir, "README.md")
        if not os.path.isfile(path):
            return
        base = base_model_id(self.accelerator.unwrap_model(self.model))
        license = license or self.args.license or base_model_license(self.model, base)
        complete_card(path, base, license, datasets=[dataset_name] if dataset_name else [])
        section = constraint_section(
            self.args,
            self.duals.multipliers.tolist(),
            self.layer_metrics.last_layer_losses["train"],
            self.layer_metrics.last_layer_losses["eval"],
            cost=self.cost,
        )
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n" + section)
