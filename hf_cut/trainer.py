"""``ConstrainedSFTTrainer``: TRL's ``SFTTrainer`` under layerwise descent constraints.

The trainer keeps ``SFTTrainer``'s constructor, data handling and loop, and overrides the few hooks it must: the loss
(``compute_loss``: the Lagrangian ``ℓ_L + Σ_l λ_l s_l``), the logs (per-layer losses, duals, slacks), the checkpoint
(dual variables saved and restored with the optimizer) and the model card. The dual step runs once per optimizer step,
from a callback, after the primal step.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import torch
from torch import nn
from transformers import TrainerCallback
from trl import SFTConfig, SFTTrainer

from .config import ConstrainedSFTConfig
from .duals import DualVariables, descent_ratios, lagrangian_penalty, slack
from .model_card import PAPER, constraint_section
from .noise import EmbeddingNoise
from .readout import LayerReadoutRequest, add_layer_readout, num_layers

__all__ = ["ConstrainedSFTTrainer", "DUALS_NAME"]

DUALS_NAME = "dual_variables.pt"


class _DualStepCallback(TrainerCallback):
    """Takes the dual step after every ``dual_update_interval``-th optimizer step."""

    def __init__(self, trainer: ConstrainedSFTTrainer) -> None:
        self.trainer = trainer

    def on_step_end(self, args, state, control, **kwargs):
        if args.constrained and state.global_step % args.dual_update_interval == 0:
            self.trainer.duals.step(device=self.trainer.accelerator.device)
        return control


def _as_constrained_config(args: SFTConfig) -> ConstrainedSFTConfig:
    """A ``ConstrainedSFTConfig`` with the values of a plain ``SFTConfig`` (constraint options at their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
    return ConstrainedSFTConfig(**values)


class ConstrainedSFTTrainer(SFTTrainer):
    """Supervised fine-tuning of a causal LM under the layerwise descent constraints of P-CUT.

    A drop-in replacement for [`~trl.SFTTrainer`]: same arguments, same datasets, same scripts. Every layer's hidden
    state is read out by the model's final norm and ``lm_head`` on the completion tokens ``SFTTrainer`` trains on,
    giving layer losses ``ℓ_0 … ℓ_L``; the trainer minimises the Lagrangian ``ℓ_L + Σ_l λ_l (ℓ_l − (1 − α) ℓ_{l−1})``
    and raises ``λ_l`` where constraint ``l`` is violated.

    Args:
        model: a model object or a Hub name / local path, as for ``SFTTrainer``.
        args: a [`ConstrainedSFTConfig`]; a plain ``SFTConfig`` is accepted and gets the default constraint options.
        *trainer_args, **trainer_kwargs: everything else ``SFTTrainer`` takes (``train_dataset``, ``eval_dataset``,
            ``processing_class``, ``peft_config``, ``callbacks`` …).

    Attributes:
        duals: the :class:`~hf_cut.duals.DualVariables` (λ and the slack accumulated for the next dual step).
        noise: the :class:`~hf_cut.noise.EmbeddingNoise` hook on the input embeddings (γ = ``args.noise_gamma``).
    """

    _tag_names = ["trl", "sft", "hf-cut"]
    _name = "Constrained SFT"
    _paper = PAPER

    def __init__(self, model: str | nn.Module, args: SFTConfig | None = None, *trainer_args, **trainer_kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config._name_or_path
            args = ConstrainedSFTConfig(output_dir=f"{(name or 'model').split('/')[-1]}-CUT")
        elif not isinstance(args, ConstrainedSFTConfig):
            args = _as_constrained_config(args)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        if self.aux_loss_enabled:
            raise ValueError(
                "`router_aux_loss_coef`: the MoE load-balancing loss is not supported by ConstrainedSFTTrainer yet; "
                "set `router_aux_loss_coef=0.0`."
            )
        base = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        add_layer_readout(base)  # raises ValueError if the norm, head or layers cannot be found
        self.num_layers = num_layers(base)
        self.duals = DualVariables(
            self.num_layers, args.descent_alpha, args.dual_lr, args.dual_init, args.resilience_coef
        )
        self.noise = EmbeddingNoise(args.noise_gamma, args.noise_mean).attach(base)
        self.add_callback(_DualStepCallback(self))
        self._final_layer_losses: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
        if self.train_dataset is not None:
            _check_trainable_tokens(self.train_dataset, args)

    @property
    def dual_variables(self) -> torch.Tensor:
        """λ_1 … λ_L, one float per constraint (a copy)."""
        return self.duals.multipliers.float().clone()

    def _readout_request(self) -> LayerReadoutRequest:
        args = self.args
        L = self.num_layers
        if not self.model.training:
            grad = [False] * L
        elif args.constrained:
            # ∂𝓛/∂ℓ_l = λ_l − (1 − α) λ_{l+1} (the second term only without the stop-gradient); zero needs no backward
            lam = self.duals.multipliers.tolist() + [0.0]
            grad = [l >= 1 and lam[l - 1] > 0 for l in range(L)]
            if not args.detach_previous_loss:
                grad = [g or lam[l] > 0 for l, g in enumerate(grad)]
        else:
            grad = [args.deep_supervision_weight > 0 and l >= 1 for l in range(L)]
        return LayerReadoutRequest(token_fraction=args.layer_loss_token_fraction, grad_layers=grad)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        mode = "train" if self.model.training else "eval"
        args = self.args
        inputs = {**inputs, "use_cache": False}
        outputs = model(**inputs, layer_readout=self._readout_request(), num_items_in_batch=num_items_in_batch)
        layer_losses = outputs.layer_losses  # ℓ_0 … ℓ_L, micro-batch means on the sampled tokens
        num_tokens = outputs.num_tokens
        denom = torch.as_tensor(num_tokens if num_items_in_batch is None else num_items_in_batch).clamp(min=1)
        loss = outputs.loss  # Σ_tokens −log p / denom: the last layer, normalised exactly as SFTTrainer does

        if mode == "train":
            # The layer terms are micro-batch means; weighting them by this micro-batch's share of the tokens
            # normalises them as the last-layer loss is, across gradient accumulation and data-parallel ranks.
            share = num_tokens / denom
            if args.constrained:
                penalty = lagrangian_penalty(
                    layer_losses, self.duals.multipliers, args.descent_alpha, args.detach_previous_loss
                )
                loss = loss + share * penalty
                self.duals.accumulate(layer_losses, num_tokens)
            elif args.deep_supervision_weight > 0 and self.num_layers > 1:
                loss = loss + share * args.deep_supervision_weight * layer_losses[1:-1].mean()
            if args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * (self.accelerator.num_processes // self.get_tp_size())

        self._record_metrics(mode, outputs, inputs)
        if return_outputs:
            # `compute_metrics` wants logits, which the layerwise pass never builds: one more forward, as in TRL
            with torch.no_grad():
                outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, outputs
        return loss

    def _record_metrics(self, mode: str, outputs, inputs: Mapping[str, Any]) -> None:
        gather = self.accelerator.gather_for_metrics
        metrics = self._metrics[mode]
        # Per-layer losses: mean over ranks; the last layer on every completion token
        losses = outputs.layer_losses.detach().clone()
        num_valid = outputs.num_tokens
        losses[-1] = -outputs.log_probs.detach().sum() / num_valid.clamp(min=1)
        losses = gather(losses[None]).mean(0)
        sampled = gather(outputs.layer_losses.detach()[None]).mean(0)
        slacks = slack(sampled, self.args.descent_alpha)
        for layer, value in enumerate(losses.tolist()):
            metrics[f"layer_loss/{layer}"].append(value)
        for layer, value in enumerate(slacks.tolist(), start=1):
            metrics[f"slack/{layer}"].append(value)
        metrics["constraint_satisfaction"].append((slacks <= 0).float().mean().item())
        metrics["descent_ratio_mean"].append(descent_ratios(sampled).mean().item())
        # TRL's own metrics, from the same pass
        total_valid = gather(num_valid).sum()
        entropy_sum = gather(outputs.entropy.sum()).sum()
        num_correct = gather(outputs.is_top1.sum()).sum()
        metrics["entropy"].append((entropy_sum / total_valid).item() if total_valid > 0 else 0.0)
        metrics["mean_token_accuracy"].append((num_correct / total_valid).item() if total_valid > 0 else 0.0)
        if mode == "train":
            if "attention_mask" in inputs:
                tokens = gather(inputs["attention_mask"].sum()).sum().item()
            else:
                tokens = gather(torch.tensor(inputs["input_ids"].numel(), device=num_valid.device)).sum().item()
            self._total_train_tokens += tokens // self._tp_size
        metrics["num_tokens"] = [self._total_train_tokens]

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        mode = "train" if self.model.training else "eval"
        for layer, value in enumerate(self.duals.multipliers.tolist(), start=1):
            self._metrics[mode][f"dual/{layer}"] = [value]
        for key, values in self._metrics[mode].items():
            if key.startswith("layer_loss/") and values:
                self._final_layer_losses[mode][int(key.split("/")[1])] = sum(values) / len(values)
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
            self.duals.load_state_dict(torch.load(path, weights_only=True))
        elif self.args.constrained:
            warnings.warn(f"{path} not found: the dual variables restart from `dual_init`.", stacklevel=2)

    def create_model_card(
        self, model_name: str | None = None, dataset_name: str | None = None, tags: str | list[str] | None = None
    ) -> None:
        """TRL's model card, plus a section with α, the final dual variables and the per-layer losses."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        path = os.path.join(self.args.output_dir, "README.md")
        section = constraint_section(
            self.args,
            self.duals.multipliers.tolist(),
            self._final_layer_losses["train"],
            self._final_layer_losses["eval"],
        )
        with open(path, "a", encoding="utf-8") as f:
            f.write("\n" + section)


def _check_trainable_tokens(dataset, args: SFTConfig, max_rows: int = 2000) -> None:
    """``ValueError`` if the (tokenised) dataset has no token the loss would train on, before any compute."""
    columns = getattr(dataset, "column_names", None)
    if not columns or "input_ids" not in columns:
        return  # iterable or custom-collated data: checked by the collator at run time
    rows = dataset.select(range(min(len(dataset), max_rows)))
    if "labels" in columns:  # TRL builds the labels itself, -100 on the tokens it does not train on
        count = sum(sum(label != -100 for label in labels[1:]) for labels in rows["labels"])
        what = "position with a label other than -100"
    elif "completion_mask" in columns and args.completion_only_loss is not False:
        count = sum(sum(m[1:]) for m in rows["completion_mask"])
        what = "completion token (`completion_only_loss`)"
    elif "assistant_masks" in columns and args.assistant_only_loss:
        count = sum(sum(m[1:]) for m in rows["assistant_masks"])
        what = "assistant token (`assistant_only_loss`)"
    else:
        count = sum(max(len(ids) - 1, 0) for ids in rows["input_ids"])
        what = "token after the first of a sequence"
    if count == 0:
        raise ValueError(f"`train_dataset` has no trainable tokens: no {what} in its first {len(rows)} rows.")
