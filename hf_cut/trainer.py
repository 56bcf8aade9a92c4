"""``ConstrainedSFTTrainer``: TRL's ``SFTTrainer`` under layerwise descent constraints.

The trainer keeps ``SFTTrainer``'s constructor, data handling and loop, and extends it through public methods only:
the loss (``compute_loss``: TRL's own, its forward served by the layer readout, plus the Lagrangian's layer terms
``Σ_l λ_l s_l``), the logs (per-layer losses, duals, slacks), the saved model (the dual variables beside the weights)
and the model card. The dual step, and the problem's state in checkpoints, belong to a callback
(:class:`~hf_cut.constraint_callback.ConstraintCallback`).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Any

import torch
from torch import nn
from transformers import Trainer, TrainingArguments
from transformers.utils import logging
from transformers.modeling_outputs import SequenceClassifierOutput
from trl import SFTConfig, SFTTrainer

from .config import ConstrainedSFTConfig, ConstrainedTrainingArguments
from .constrained import DUALS_NAME, ConstrainedMixin, check_loss_options
from .cost import allocate, step_flops_per_token
from .readout import (
    ClassifierReadoutRequest,
    LayerReadoutRequest,
    add_classifier_readout,
    add_layer_readout,
    base_model,
    num_layers,
    pending_layer_readout,
)
from .readout.causal_lm import token_losses

__all__ = ["ConstrainedSFTTrainer", "ConstrainedTrainer", "DUALS_NAME"]

logger = logging.get_logger(__name__)


def _as_constrained_config(args, config_class):
    """A constrained config with the values of a plain one (constraint options at their defaults)."""
    values = {f.name: getattr(args, f.name) for f in fields(args) if f.init}
    return config_class(**values)


class ConstrainedSFTTrainer(ConstrainedMixin, SFTTrainer):
    """Supervised fine-tuning of a causal LM under the layerwise descent constraints of P-CUT.

    A drop-in replacement for [`~trl.SFTTrainer`]: same arguments, same datasets, same scripts. Every layer's hidden
    state is read out by the model's final norm and ``lm_head`` on the completion tokens ``SFTTrainer`` trains on,
    giving layer losses ``ℓ_0 … ℓ_L``; the trainer minimises the Lagrangian ``ℓ_L + Σ_l λ_l (ℓ_l − (1 − α) ℓ_{l−1})``
    and raises ``λ_l`` where constraint ``l`` is violated.

    Args:
        model: a model object or a Hub name / local path, as for ``SFTTrainer``.
        args: a [`ConstrainedSFTConfig`]; a plain ``SFTConfig`` is accepted and gets the default constraint options.
        *trainer_args (Any): ``SFTTrainer``'s positional arguments after ``args``.
        **trainer_kwargs (Any): everything else ``SFTTrainer`` takes (``train_dataset``, ``eval_dataset``,
            ``processing_class``, ``peft_config``, ``callbacks`` …).

    Attributes:
        duals (DualVariables): the :class:`~hf_cut.duals.DualVariables` (λ and the slack accumulated for the next
            dual step).
        noise (EmbeddingNoise): the :class:`~hf_cut.noise.EmbeddingNoise` hook on the input embeddings
            (γ = ``args.noise_gamma``).
    """

    _tag_names = ["trl", "sft", "hf-cut"]
    _name = "Constrained SFT"

    def __init__(self, model: str | nn.Module, args: SFTConfig | None = None, *trainer_args, **trainer_kwargs):
        if args is None:
            name = model if isinstance(model, str) else model.config.name_or_path
            args = ConstrainedSFTConfig(output_dir=f"{(name or 'model').split('/')[-1]}-CUT")
        elif not isinstance(args, ConstrainedSFTConfig):
            args = _as_constrained_config(args, ConstrainedSFTConfig)
        check_loss_options(args, trainer_kwargs.get("compute_loss_func"))
        _refuse_vision_language(model, args)
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        parallelism = getattr(self.accelerator, "parallelism_config", None)
        if parallelism is not None and getattr(parallelism, "sp_enabled", False):
            raise ValueError(
                "`parallelism_config` with sequence parallelism is not supported by ConstrainedSFTTrainer yet: its loss "
                "is a mean over the sequence-parallel group that the layer terms are not normalised like. Train "
                "without sequence parallelism (`sp_size=1`)."
            )
        if self.aux_loss_enabled:
            raise ValueError(
                "`router_aux_loss_coef`: the MoE load-balancing loss is not supported by ConstrainedSFTTrainer yet; "
                "set `router_aux_loss_coef=0.0`."
            )
        base = base_model(self.model)
        add_layer_readout(base)  # raises ValueError if the norm, head or layers cannot be found
        self._setup_constraints(base, num_layers(base))
        if args.layer_loss_budget is not None:
            checkpointing = getattr(args, "activation_checkpointing", getattr(args, "gradient_checkpointing", False))
            plain, readout = step_flops_per_token(base, checkpointing)
            self.cost = allocate(args.layer_loss_budget, plain, readout, self.num_layers)
            logger.info(
                f"layer_loss_budget={args.layer_loss_budget}: {self.cost.layer_sample_size} layer(s) with grad per step "
                f"on {self.cost.token_fraction:.4g} of the completion tokens, every layer's value on "
                f"{self.cost.dual_token_fraction:.4g} of them (+{100 * self.cost.extra:.1f}% FLOPs per step)."
            )
        if self.train_dataset is not None:
            _check_trainable_tokens(self.train_dataset, args)

    def _readout_request(self) -> LayerReadoutRequest:
        # The token fraction is a training cost control; evaluation scores every token, so held-out layer losses and
        # constraint satisfaction are exact and comparable across fractions
        loss_type = self.args.loss_type
        if not self.model.training:
            return LayerReadoutRequest(grad_layers=self._grad_layers(), loss_type=loss_type)
        return LayerReadoutRequest(
            token_fraction=self.cost.token_fraction,
            grad_layers=self._grad_layers(),
            dual_token_fraction=self.cost.dual_token_fraction,
            loss_type=loss_type,
        )



    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor | Any],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ):
        """``SFTTrainer.compute_loss``, its loss forward served by the layer readout on the steps that measure the
        layers: TRL computes ``ℓ_L`` (every ``loss_type``, label smoothing, ``compute_loss_func``, the scaling across
        devices) and its own metrics from the readout's last-layer outputs, and the Lagrangian's layer terms are added
        to its loss."""
        if not self._measures_layers():  # a step between two measured ones: exactly SFTTrainer's
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        with pending_layer_readout(self.noise_target, self._readout_request()) as request:
            loss = super().compute_loss(model, inputs, False, num_items_in_batch)
        outputs = request.output
        if outputs is None:
            raise RuntimeError(
                "SFTTrainer.compute_loss did not call the model with `fused_lm_head=True`, so the layer readout never "
                "ran: this version of TRL computes its loss in a way hf-cut does not know."
            )
        if mode == "train" and not self._loss_is_parents():
            # The layer terms are micro-batch means; weighting them by this micro-batch's share of the tokens
            # normalises them as the last-layer loss is, across gradient accumulation and data-parallel ranks.
            num_tokens = outputs.num_tokens
            denom = torch.as_tensor(num_tokens if num_items_in_batch is None else num_items_in_batch).clamp(min=1)
            terms = self._lagrangian_terms(outputs.layer_losses, num_tokens / denom, num_tokens,
                                           outputs.grad_layer_losses)  # fmt: skip
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                terms = terms * (self.accelerator.num_processes // self.get_tp_size())  # as TRL scales ℓ_L
            loss = loss + terms
        self._record_layer_metrics(mode, outputs.layer_losses, outputs.num_tokens, self._logged(outputs))
        if return_outputs:
            # `compute_metrics` wants logits, which the fused pass never builds: one more forward, as TRL does
            with torch.no_grad():
                logits_outputs = model(**{k: v for k, v in inputs.items() if k != "labels"})
            return loss, logits_outputs
        return loss

    def _logged(self, outputs) -> torch.Tensor:
        """The layer losses as logged: as estimated (slacks compare like with like), the last layer on every token."""
        logged = outputs.layer_losses.detach().clone()
        num_valid = outputs.num_tokens.clamp(min=1)
        logged[-1] = token_losses(outputs.log_probs.detach(), self.args.loss_type).sum() / num_valid
        return logged


class ConstrainedTrainer(ConstrainedMixin, Trainer):
    """``transformers.Trainer`` for sequence classifiers and regressors under the layerwise descent constraints.

    A drop-in replacement for [`~transformers.Trainer`] with an ``AutoModelForSequenceClassification`` model: every
    layer's hidden state goes through the model's own head (:mod:`hf_cut.readout.sequence_head`), giving the layer losses
    ``ℓ_0 … ℓ_L`` of the model's own loss (cross-entropy, or MSE for ``num_labels = 1``); options, logs, checkpoints
    and ``dual_variables`` are those of :class:`ConstrainedSFTTrainer`.

    Args:
        model: the classifier (``*ForSequenceClassification``; a PEFT-wrapped one works too).
        args: a [`ConstrainedTrainingArguments`]; plain ``TrainingArguments`` get the default constraint options.
        *trainer_args (Any): ``Trainer``'s positional arguments after ``args``.
        **trainer_kwargs (Any): everything else ``Trainer`` takes.
    """

    _tag_names = ["hf-cut"]

    def __init__(self, model: nn.Module, args: TrainingArguments | None = None, *trainer_args, **trainer_kwargs):
        if args is None:
            args = ConstrainedTrainingArguments(output_dir="trainer_output")
        elif not isinstance(args, ConstrainedTrainingArguments):
            args = _as_constrained_config(args, ConstrainedTrainingArguments)
        check_loss_options(args, trainer_kwargs.get("compute_loss_func"))
        super().__init__(model, args, *trainer_args, **trainer_kwargs)
        # The loss is a batch mean computed here: let Trainer scale it for gradient accumulation
        self.model_accepts_loss_kwargs = False
        base = base_model(self.model)
        # Models of hf_cut.models compute their layer losses natively; HF classifiers get the readout patched in
        if not getattr(base, "supports_layer_readout", False):
            add_classifier_readout(base)  # ValueError for a head it cannot read out
        self._setup_constraints(base, num_layers(base))
        if hasattr(self.model, "add_model_tags"):
            self.model.add_model_tags(self._tag_names)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if not self._measures_layers():  # a step between two measured ones: exactly Trainer's
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        if "labels" not in inputs:
            raise ValueError("ConstrainedTrainer needs `labels` in every batch: the layer losses are supervised.")
        request = ClassifierReadoutRequest(grad_layers=self._grad_layers())
        if self._loss_is_parents():
            # a copy: `Trainer.compute_loss` pops "labels" from the dict it gets (smoothing, `compute_loss_func`)
            result = super().compute_loss(model, dict(inputs), return_outputs, num_items_in_batch)
            with torch.no_grad():
                outputs = model(**inputs, layer_readout=request)
            self._record_layer_metrics(mode, outputs.layer_losses, outputs.num_examples)
            return result
        outputs = model(**inputs, layer_readout=request)
        loss = outputs.layer_losses[-1]
        if mode == "train":
            loss = loss + self._lagrangian_terms(outputs.layer_losses, 1.0, outputs.num_examples)
        self._record_layer_metrics(mode, outputs.layer_losses, outputs.num_examples)
        if return_outputs:  # only the logits go to `compute_metrics`
            return loss, SequenceClassifierOutput(loss=loss, logits=outputs.logits)
        return loss


def _refuse_vision_language(model: str | nn.Module, args: SFTConfig) -> None:
    """``ValueError`` for a vision-language model (a config with a text config of its own: Qwen2.5-VL, Gemma 3,
    LLaVA …), read from its config before anything is loaded. A name whose config cannot be read is left to
    ``SFTTrainer``, which reports it."""
    from transformers import AutoConfig

    if isinstance(model, str):
        try:
            config = AutoConfig.from_pretrained(model, revision=(args.model_init_kwargs or {}).get("revision"))
        except (OSError, ValueError):
            return
    else:
        config = getattr(model, "config", None)
    if config is None or not hasattr(config, "get_text_config") or config.get_text_config() is config:
        return
    kind = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    raise ValueError(
        f"`model` ({kind}) is a vision-language model: ConstrainedSFTTrainer reads out text decoders only, and has "
        "not been checked on the language model of a multimodal one. Fine-tune its language model alone, or use "
        "TRL's SFTTrainer."
    )


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
