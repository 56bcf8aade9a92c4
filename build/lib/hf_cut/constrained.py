"""What both constrained trainers share: dual variables, the noise hook, the Lagrangian, logs, checkpoints, the card.

:class:`ConstrainedMixin` goes first in the bases of a trainer (``class T(ConstrainedMixin, SFTTrainer)``). The
trainer calls :meth:`_setup_constraints` once its model is prepared, and in ``compute_loss`` turns the layer losses
its readout returned into the training loss with :meth:`_lagrangian_terms` and into logs with
:meth:`_record_layer_metrics`. The readout is the only part that knows the architecture.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import warnings
from collections import defaultdict

import torch
from torch import nn
from transformers import TrainerCallback

from .config import constrained_layer_mask, normalise_resilience, resolve_resilience
from .cost import LayerBudget
from .duals import DualVariables, descent_ratios, lagrangian_penalty, slack
from .layer_sampling import inclusion_probabilities, rotation, step_generator, systematic_sample
from .model_card import PAPER, base_model_id, base_model_license, complete_card, constraint_section
from .noise import EmbeddingNoise

__all__ = ["ConstrainedMixin", "DUALS_NAME", "check_loss_options"]

DUALS_NAME = "dual_variables.pt"


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


class _DualStepCallback(TrainerCallback):
    """Takes the dual step after every ``dual_update_interval``-th optimizer step (after the primal step)."""

    def __init__(self, trainer: ConstrainedMixin) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if args.constrained and state.global_step % args.dual_update_interval == 0:
            # with layers measured every K-th step only, one measured step stands for K / D dual steps' slack
            scale = max(1.0, args.layer_loss_interval / args.dual_update_interval)
            self.trainer.duals.step(device=self.trainer.accelerator.device, scale=scale)
        return control


class ConstrainedMixin:
    """Primal–dual machinery of P-CUT (arXiv 2601.17257) on top of a ``transformers.Trainer`` subclass.

    Attributes:
        duals: the :class:`~hf_cut.duals.DualVariables` (λ and the slack accumulated for the next dual step).
        noise: the :class:`~hf_cut.noise.EmbeddingNoise` hook on the input embeddings (γ = ``args.noise_gamma``),
            attached while ``train()`` runs and acting on its training forwards only (``noise_at_eval``: also on
            evaluation and prediction).
        num_layers: L, the number of constraints.
    """

    _paper = PAPER
    # transformers' Trainer does not average per-step metrics by itself (TRL's trainers do)
    _average_metrics_in_log = False

    def _setup_constraints(self, base_model: nn.Module, num_layers: int) -> None:
        args = self.args
        self.num_layers = num_layers
        # β: "auto" → 1/L (the config checked everything it could without L)
        self.resilience_coef = resolve_resilience(normalise_resilience(args.resilience_coef), num_layers)
        active = constrained_layer_mask(getattr(args, "constrained_layers", "all"), num_layers)
        self.duals = DualVariables(
            num_layers, args.descent_alpha, args.dual_lr, args.dual_init, self.resilience_coef, active=active
        )
        # attached by train() (and by evaluate() / predict() with `noise_at_eval`), removed when they return
        self.noise = EmbeddingNoise(args.noise_gamma, args.noise_mean, training_only=not args.noise_at_eval)
        self.noise_target = base_model
        self.add_callback(_DualStepCallback(self))
        # the cost options as given (a causal-LM trainer resolves `layer_loss_budget` into them, see hf_cut.cost)
        fraction = 1.0 if args.layer_loss_token_fraction is None else args.layer_loss_token_fraction
        dual = fraction if args.dual_token_fraction is None else args.dual_token_fraction
        self.cost = LayerBudget(args.layer_sample_size, fraction, dual)
        self._final_layer_losses: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
        if not hasattr(self, "_metrics"):
            self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

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

    def train(self, *args, **kwargs):
        """``Trainer.train`` with the embedding noise on its training forwards; the hook is removed when it returns or
        raises, so the returned (and saved) model is the plain model."""
        with self._noise_attached():
            return super().train(*args, **kwargs)

    def evaluate(self, *args, **kwargs):
        """``Trainer.evaluate`` on clean embeddings, or under the training noise with ``noise_at_eval``."""
        with self._noise_attached(self.args.noise_at_eval):
            return super().evaluate(*args, **kwargs)

    def predict(self, *args, **kwargs):
        """``Trainer.predict`` on clean embeddings, or under the training noise with ``noise_at_eval``."""
        with self._noise_attached(self.args.noise_at_eval):
            return super().predict(*args, **kwargs)

    @property
    def dual_variables(self) -> torch.Tensor:
        """λ_1 … λ_L, one float per constraint (a copy)."""
        return self.duals.multipliers.float().clone()

    def _loss_is_parents(self) -> bool:
        """Does the parent trainer's own loss stand in for the layerwise one? For plain ERM (no layer term in the loss)
        with an option only that loss implements (label smoothing, a ``compute_loss_func``): the loss is then exactly
        ``SFTTrainer``'s / ``Trainer``'s, and the layers are scored without grad for the logs."""
        args = self.args
        if args.constrained or args.deep_supervision_weight > 0:
            return False
        return args.label_smoothing_factor > 0 or getattr(self, "compute_loss_func", None) is not None

    def _measures_layers(self) -> bool:
        """Does this step compute the layer losses? Always in evaluation; in training every
        ``layer_loss_interval``-th optimizer step (the same steps on every rank, and again after a resume), and for
        plain ERM, whose layer losses are only logged, only the steps the Trainer logs."""
        if not self.model.training:
            return True
        args, step = self.args, self.state.global_step
        if step % args.layer_loss_interval != 0:
            return False
        if args.constrained or args.deep_supervision_weight > 0:
            return True
        return self._logs_next_step()

    def _logs_next_step(self) -> bool:
        """Will the optimizer step being computed be logged (``logging_strategy="steps"``)?"""
        args, state = self.args, self.state
        if str(getattr(args.logging_strategy, "value", args.logging_strategy)) != "steps":
            return False
        every = state.logging_steps or args.logging_steps
        every = max(1, int(every if every >= 1 else math.ceil(every * state.max_steps)))
        return (state.global_step + 1) % every == 0 or (args.logging_first_step and state.global_step == 0)

    def _layer_weights(self) -> list[float]:
        """``c_l = ∂(training loss)/∂ℓ_l`` for ``l = 0 … L−1`` (ℓ_L has its gradient in any case)."""
        args, L = self.args, self.num_layers
        if args.constrained:
            # ∂𝓛/∂ℓ_l = λ_l − (1 − α) λ_{l+1} (the second term only without the stop-gradient); λ_l is multipliers[l−1]
            lam = [0.0] + self.duals.multipliers.tolist() + [0.0]
            if args.detach_previous_loss:
                return [lam[l] for l in range(L)]
            return [lam[l] - (1.0 - args.descent_alpha) * lam[l + 1] for l in range(L)]
        if args.deep_supervision_weight > 0 and L > 1:
            return [0.0] + [args.deep_supervision_weight / (L - 1)] * (L - 1)
        return [0.0] * L

    def _layer_sample(self) -> dict[int, float]:
        """This step's layers with a gradient → their factor 1/π_l (1 without `layer_sample_size`); the same on every
        micro-batch, every rank and after a resume (drawn from (seed, global_step))."""
        step = self.state.global_step
        cached = getattr(self, "_layer_sample_cache", None)
        if cached is not None and cached[0] == step:
            return cached[1]
        args, weights = self.args, self._layer_weights()
        candidates = [l for l, w in enumerate(weights) if w != 0]
        m = self.cost.layer_sample_size
        if m is None or m >= len(candidates):
            sample = {l: 1.0 for l in candidates}
        elif args.layer_sampling == "rotation":
            position = step // args.layer_loss_interval
            sample = {l: len(candidates) / m for l in rotation(candidates, m, position)}
        else:
            pi = inclusion_probabilities(weights, m)
            sample = {l: 1.0 / pi[l] for l in systematic_sample(pi, self._draw_uniform(step))}
        self._layer_sample_cache = (step, sample)
        return sample

    def _draw_uniform(self, step: int) -> float:
        """u ~ U[0, 1) of systematic sampling, from (seed, step) alone."""
        return torch.rand((), generator=step_generator(self.args.seed, step)).item()

    def _grad_layers(self) -> list[bool]:
        """For ``l = 0 … L−1``: does ``ℓ_l`` get a gradient on this step (weight in the loss, and sampled)?"""
        if not self.model.training:
            return [False] * self.num_layers
        sample = self._layer_sample()
        return [l in sample for l in range(self.num_layers)]

    def _lagrangian_terms(
        self,
        layer_losses: torch.Tensor,
        weight: torch.Tensor | float,
        count,
        grad_layer_losses: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The part of the training loss beyond ``ℓ_L``, scaled by ``weight`` (the batch's share of the normaliser of
        ``ℓ_L``), and, when constrained, the layer losses accumulated (``count`` items) for the next dual step.

        Its value is the Lagrangian's (or deep supervision's) on ``layer_losses``; its gradient is ``Σ_l c_l ∇ℓ_l``
        on ``grad_layer_losses`` (the gradient's token sample, when larger), over the sampled layers, each times 1/π_l.
        """
        args = self.args
        if args.constrained:
            if not self.duals.accumulate(layer_losses, count):
                self._warn_nonfinite(layer_losses)
            lam, alpha = self.duals.multipliers, args.descent_alpha
            value = lagrangian_penalty(layer_losses, lam, alpha, args.detach_previous_loss)
        elif args.deep_supervision_weight > 0 and self.num_layers > 1:
            value = args.deep_supervision_weight * layer_losses[1:-1].mean()
        else:
            return layer_losses.new_zeros(())
        sample = self._layer_sample()
        if grad_layer_losses is None and all(f == 1.0 for f in sample.values()):
            return weight * value  # every weighted layer, on the value sample: the plain form
        grad_losses = layer_losses if grad_layer_losses is None else grad_layer_losses
        weights = self._layer_weights()
        surrogate = sum(weights[l] * factor * grad_losses[l] for l, factor in sample.items())
        if args.constrained:  # ℓ_L's term: its gradient comes with the last layer's, never sampled
            surrogate = surrogate + self.duals.multipliers[-1].item() * grad_losses[-1]
        surrogate = torch.as_tensor(surrogate, dtype=value.dtype, device=value.device)
        return weight * (value.detach() + surrogate - surrogate.detach())

    def _warn_nonfinite(self, layer_losses: torch.Tensor) -> None:
        values = layer_losses.detach().float().tolist()
        layers = [layer for layer, value in enumerate(values) if not math.isfinite(value)]
        warnings.warn(
            f"global_step {self.state.global_step}: non-finite layer losses at layers {layers or '(token count)'}; this "
            "micro-batch is left out of the dual step (logged as dual/skipped_nonfinite).",
            RuntimeWarning,
            stacklevel=3,
        )

    def _record_layer_metrics(
        self,
        mode: str,
        layer_losses: torch.Tensor,
        weight: torch.Tensor | float,
        logged: torch.Tensor | None = None,
    ) -> None:
        """Log ``layer_loss/{l}``, ``slack/{l}``, ``constraint_satisfaction`` and ``descent_ratio_mean``. Across ranks
        the layer losses are averaged with ``weight`` (the tokens or examples each rank's means are over: what the
        dual step weighs them by). ``logged`` replaces the layer losses in ``layer_loss/{l}`` (e.g. the last layer on
        every token)."""
        gather = self.accelerator.gather_for_metrics

        def across_ranks(values: torch.Tensor) -> torch.Tensor:
            values = values.detach()
            w = torch.as_tensor(weight, dtype=values.dtype, device=values.device).reshape(1)
            return gather((values * w)[None]).sum(0) / gather(w).sum().clamp(min=1e-12)

        sampled = across_ranks(layer_losses)
        shown = sampled if logged is None else across_ranks(logged)
        slacks = slack(sampled, self.args.descent_alpha)
        metrics = self._metrics[mode]
        for layer, value in enumerate(shown.tolist()):
            metrics[f"layer_loss/{layer}"].append(value)
        for layer, value in enumerate(slacks.tolist(), start=1):
            metrics[f"slack/{layer}"].append(value)
        metrics["constraint_satisfaction"].append((slacks <= 0).float().mean().item())
        metrics["descent_ratio_mean"].append(descent_ratios(sampled).mean().item())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        for layer, value in enumerate(self.duals.multipliers.tolist(), start=1):
            self._metrics[mode][f"dual/{layer}"] = [value]
        if self.args.constrained:  # micro-batches left out of the dual steps so far (non-finite layer losses)
            self._metrics[mode]["dual/skipped_nonfinite"] = [float(self.duals.skipped_nonfinite)]
        for key, values in self._metrics[mode].items():
            if key.startswith("layer_loss/") and values:
                self._final_layer_losses[mode][int(key.split("/")[1])] = sum(values) / len(values)
        if self._average_metrics_in_log:
            metrics = {key: sum(val) / len(val) for key, val in self._metrics[mode].items() if val}
            prefix = "eval_" if mode == "eval" else ""
            logs.update({f"{prefix}{key}": value for key, value in metrics.items()})
            self._metrics[mode].clear()
        super().log(logs, start_time)

    def _save_optimizer_and_scheduler(self, output_dir: str) -> None:
        super()._save_optimizer_and_scheduler(output_dir)
        if self.args.should_save:
            torch.save(self.duals.state_dict(), os.path.join(output_dir, DUALS_NAME))

    def _load_optimizer_and_scheduler(self, checkpoint: str | None) -> None:
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is None:
            return
        path = os.path.join(checkpoint, DUALS_NAME)
        if os.path.isfile(path):
            self.duals.load_state_dict(torch.load(path, weights_only=True), source=path)
        elif self.args.constrained:
            warnings.warn(f"{path} not found: the dual variables restart from `dual_init`.", stacklevel=2)

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
            self._final_layer_losses["train"],
            self._final_layer_losses["eval"],
            cost=self.cost,
        )
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n" + section)

    def _save(self, output_dir: str | None = None, state_dict=None) -> None:
        """The parent's save, plus the dual variables beside the weights (they are part of the trained model's
        record: the card's table reads them, and a push uploads them)."""
        super()._save(output_dir, state_dict)
        if self.args.should_save:
            output_dir = output_dir if output_dir is not None else self.args.output_dir
            torch.save(self.duals.state_dict(), os.path.join(output_dir, DUALS_NAME))
