"""Configuration of the layerwise descent constraints, shared by both trainers.

:class:`ConstraintArguments` is a dataclass mixin: its fields join those of TRL's ``SFTConfig`` (in
:class:`ConstrainedSFTConfig`) or of transformers' ``TrainingArguments`` (in :class:`ConstrainedTrainingArguments`), so
``TrlParser`` / ``HfArgumentParser`` expose them as command-line flags and YAML keys.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field, fields

from transformers import TrainingArguments
from trl import SFTConfig

from .options import (
    LAYER_SAMPLING,
    _optional_number,
    _parse_layer_spec,
    constrained_layer_mask,
    normalise_resilience,
    resolve_resilience,
)

__all__ = [
    "constraint_options",
    "ConstraintArguments",
    "ConstrainedSFTConfig",
    "ConstrainedTrainingArguments",
    "constrained_layer_mask",
    "normalise_resilience",
    "resolve_resilience",
]

@dataclass
class ConstraintArguments:
    r"""
    Options of the layerwise descent constraints ``ℓ_l ≤ (1 − α) ℓ_{l−1}`` (arXiv 2601.17257).

    > Parameters that control the constrained problem

    constrained (`bool`, defaults to `True`):
        Train the primal–dual Lagrangian. `False` trains plain ERM on the last layer (or deep supervision, see
        `deep_supervision_weight`) and still measures and logs every layer loss.
    descent_alpha (`float`, defaults to `0.1`):
        α, the fractional decrease of the loss each layer must achieve, in (0, 1).
    layer_loss_interval (`int`, defaults to `1`):
        K: train the intermediate layer losses on every K-th optimizer step only; the steps in between are plain
        `SFTTrainer` / `Trainer` steps on `ℓ_L` (same cost), and a measured step costs the whole readout at once (a
        spike in the progress bar). The dual step after a measured step is scaled by K / `dual_update_interval` (when
        larger than 1), so λ moves per optimizer step as with K = 1; the layer terms are *not* scaled, so their
        average weight in the gradient is λ/K (closer to ERM, not an unbiased estimate at λ). Evaluation always
        measures every layer. An integer >= 1.
    detach_previous_loss (`bool`, defaults to `True`):
        Stop the gradient through `ℓ_{l−1}` in the constraint term. Without it a model can meet the constraints by
        making its earlier layers worse.
    deep_supervision_weight (`float`, defaults to `0.0`):
        With `constrained=False`, weight w of the mean intermediate-layer loss (layers 1 … L−1) added to `ℓ_L`: the
        deep-supervision baseline (fixed weights, no dual variables), on the steps that measure the layers (every
        `layer_loss_interval`-th).

    constrained_layers (`str`, defaults to `"all"`):
        Which constraints `ℓ_l ≤ (1 − α) ℓ_{l−1}` are enforced: `"all"` (l = 1 … L), `"upper_half"` (l > L // 2), or
        layers as ranges and numbers (`"16-30"`, `"2,4,6-8"`). The others keep λ_l = 0 (no term in the Lagrangian, no
        gradient through their readout) and are still measured and logged. The early layers of a pretrained LLM
        cannot predict the next token through the head; constraining only the upper layers leaves them free.

    > Parameters that control the dual variables

    dual_lr (`float`, defaults to `0.01`):
        η_d, the dual learning rate, separate from the model's learning rate.
    dual_update_interval (`int`, defaults to `1`):
        Optimizer steps between two dual steps; the slack is accumulated in between.
    dual_init (`float`, defaults to `0.0`):
        Initial value of every dual variable λ_l.
    resilience_coef (`float`, `"auto"` or `None`, defaults to `"auto"`):
        β of the resilient relaxation `u_l = λ_l / β` (Hounie et al. 2023): at equilibrium λ_l = β·s_l, so a
        constraint the model cannot meet costs a bounded weight instead of one that grows without end. `"auto"` is
        β = 1/L for a model of L layers: the constraint terms together then weigh at most the mean violation, the
        scale of ℓ_L and of deep supervision (measured on SmolLM2, 30 layers: README). `None` (or `"none"`, `inf`)
        keeps the constraints hard, the paper's exact formulation. The relaxed dual step is taken implicitly,
        `λ ← [(λ + η_d ŝ) / (1 + η_d/β)]₊`: it settles at β·ŝ without oscillating for every `dual_lr` > 0.

    > Parameters that control the input perturbation and the cost

    noise_gamma (`float`, defaults to `0.0`):
        γ used while training: the input embeddings get Gaussian noise of standard deviation γ·σ_x.
    noise_mean (`float`, defaults to `0.0`):
        μ, the mean of that noise.
    noise_at_eval (`bool`, defaults to `False`):
        The noise is a training intervention, as NEFTune's is: by default `evaluate()`, `predict()` and generation
        see clean embeddings, and the hook is removed when `train()` returns, so the returned and the saved model
        are plain. `True` also perturbs the forwards of `evaluate()` and `predict()` (the `eval_*` metrics are then
        measured under the training noise). The γ sweep (`hf_cut.evaluation`) sets its own γ either way.
    layer_loss_budget (`float` or `None`, defaults to `0.1`):
        The extra FLOPs the layer terms may add to a step, as a share of a plain `SFTTrainer` step. The trainer
        counts the model's readout and decoder-layer parameters and chooses `layer_sample_size`,
        `layer_loss_token_fraction` and `dual_token_fraction` to spend it (:mod:`hf_cut.cost`): a quarter on every
        layer's value for the dual step, the rest on the gradient of m layers on a share f of the tokens (f grows to
        1 before m grows). The choice is logged and written to the model card. `None`: set those three yourself
        (every layer on every token when unset). Setting one of them with a budget is an error.
    layer_loss_token_fraction (`float` or `None`, defaults to `None`):
        Share of the completion tokens, drawn at random each training step, on which `ℓ_0 … ℓ_{L−1}` are estimated
        (the same tokens for every layer; an unbiased estimate); the last layer always uses every token, and
        evaluation every token at every layer. In (0, 1]; `None`: 1 (or the budget's). Unbiased, but its noise is
        multiplied by λ and inflates Adam's second moment for every parameter: with hard constraints (λ ~ 5) even
        1/4 of the tokens ruins the model (docs/performance.md).
    dual_token_fraction (`float` or `None`, defaults to `None`):
        Share of the completion tokens on which the layers that need no gradient are scored, for the dual step and
        the logs (a forward pass only); the layers with grad use the first of their own tokens, so every value is a
        mean over the same tokens. At most `layer_loss_token_fraction`; `None`: the same.
    layer_sample_size (`int` or `None`, defaults to `None`):
        m: on a step that measures the layers, give a gradient to only m of the intermediate layers whose loss
        carries weight in the training loss (λ_l > 0, or the deep-supervision weight), chosen by `layer_sampling` and
        each weighted by 1/π_l (its probability of being chosen), so the gradient stays unbiased. The other layers
        are still scored without grad for the dual step. `None`: every such layer.
    layer_sampling (`str`, defaults to `"weighted"`):
        How `layer_sample_size` chooses: `"weighted"`, with probability proportional to the layer's weight in the
        training loss (systematic sampling, exactly m layers, the same draw on every rank and after a resume);
        `"rotation"`, the next m layers in turn (LayerSkip's rotational curriculum, arXiv 2404.16710), unbiased over a
        cycle rather than at every step.

    > Parameters that control the model card

    license (`str` or `None`, defaults to `None`):
        The `license` of the card `push_to_hub` uploads (a Hub license id, e.g. `"apache-2.0"`); `None`: the base
        model's license when it is known (its local card, or the Hub's card data when online), else none.
    """

    constrained: bool = field(
        default=True,
        metadata={"help": "Train under the layerwise descent constraints; False trains plain ERM (layer losses logged)."},
    )
    descent_alpha: float = field(
        default=0.1, metadata={"help": "α: required fractional decrease of the loss per layer, in (0, 1)."}
    )
    dual_lr: float = field(default=0.01, metadata={"help": "η_d: learning rate of the dual variables (> 0)."})
    dual_update_interval: int = field(
        default=1, metadata={"help": "Optimizer steps between dual steps (slack accumulated in between), >= 1."}
    )
    dual_init: float = field(default=0.0, metadata={"help": "Initial value of the dual variables (>= 0)."})
    # typed str for the command line ("auto", "none", "0.05"); normalised to "auto", a float or None
    resilience_coef: str | None = field(
        default="auto",
        metadata={
            "help": "β of the resilient relaxation u = λ/β: a number > 0, 'auto' (β = 1/L, L the number of layers) "
            "or None (hard constraints, the paper's formulation)."
        },
    )
    noise_gamma: float = field(
        default=0.0, metadata={"help": "γ: scale of the Gaussian noise on the input embeddings in training (>= 0)."}
    )
    noise_mean: float = field(default=0.0, metadata={"help": "μ: mean of the embedding noise."})
    noise_at_eval: bool = field(
        default=False,
        metadata={"help": "Also perturb the embeddings in evaluate() and predict() (default: training forwards only)."},
    )
    # typed str for the command line ("0.1", "none"); normalised to a float or None
    layer_loss_budget: str | None = field(
        default="0.1",
        metadata={
            "help": "Extra FLOPs the layer terms may add, as a share of a plain SFT step: chooses layer_sample_size, "
            "layer_loss_token_fraction and dual_token_fraction for the model (None: set them yourself)."
        },
    )
    layer_loss_token_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Share of completion tokens, per training step, on which the intermediate layer losses are "
            "estimated, in (0, 1] (None: 1, or the budget's); evaluation uses every token."
        },
    )
    dual_token_fraction: float | None = field(
        default=None,
        metadata={
            "help": "Share of completion tokens on which the layers without grad are scored for the dual step, "
            "at most layer_loss_token_fraction (None: the same)."
        },
    )
    layer_sample_size: int | None = field(
        default=None,
        metadata={"help": "m: intermediate layers with a gradient per measured step, importance-weighted (None: all)."},
    )
    layer_sampling: str = field(
        default="weighted",
        metadata={"help": "How layer_sample_size chooses: 'weighted' (∝ the layer's weight) or 'rotation'."},
    )
    layer_loss_interval: int = field(
        default=1,
        metadata={
            "help": "K: train the intermediate layer losses every K-th optimizer step only (plain steps in between), "
            ">= 1."
        },
    )
    detach_previous_loss: bool = field(
        default=True,
        metadata={"help": "Stop the gradient through the previous layer's loss in the constraint term."},
    )
    deep_supervision_weight: float = field(
        default=0.0,
        metadata={"help": "With constrained=False: weight of the mean intermediate layer loss (0 = plain ERM)."},
    )

    license: str | None = field(
        default=None,
        metadata={"help": "License of the model card (e.g. apache-2.0); None: the base model's, when known."},
    )

    constrained_layers: str = field(
        default="all",
        metadata={
            "help": "Constraints enforced: 'all', 'upper_half' (l > L // 2) or layers such as '16-30' or '2,4,6-8'."
        },
    )

    def __post_init__(self) -> None:
        self.validate_constraint_args()
        super().__post_init__()

    # The arguments are pickled into every checkpoint and output folder (`training_args.bin`), which `push_to_hub`
    # uploads: the pickle leaves the Hub token out. Copies in memory keep it.
    _SECRET_FIELDS = ("hub_token",)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        for name in self._SECRET_FIELDS:
            if state.get(name) is not None:
                state[name] = None
        return state

    def __copy__(self):
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        return new

    def __deepcopy__(self, memo: dict):
        import copy

        new = type(self).__new__(type(self))
        memo[id(self)] = new
        new.__dict__.update({k: copy.deepcopy(v, memo) for k, v in self.__dict__.items()})
        return new

    def validate_constraint_args(self) -> None:
        """Raise a ``ValueError`` naming the first invalid constraint option and its allowed range."""

        def fail(name: str, allowed: str) -> None:
            raise ValueError(f"`{name}` must be {allowed}, got {getattr(self, name)!r}.")

        def is_number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        def is_positive_int(value) -> bool:
            return isinstance(value, int) and not isinstance(value, bool) and value >= 1

        if not is_number(self.descent_alpha) or not 0.0 < self.descent_alpha < 1.0:
            fail("descent_alpha", "a number in the open interval (0, 1)")
        if not is_number(self.dual_lr) or self.dual_lr <= 0.0:
            fail("dual_lr", "a finite number > 0")
        if not is_positive_int(self.dual_update_interval):
            fail("dual_update_interval", "an integer >= 1")
        if not is_number(self.dual_init) or self.dual_init < 0.0:
            fail("dual_init", "a finite number >= 0")
        self.resilience_coef = normalise_resilience(self.resilience_coef)
        beta = self.resilience_coef
        if beta is not None and beta != "auto" and not beta > 0:
            fail("resilience_coef", "'auto', None (hard constraints) or a number > 0")
        _parse_layer_spec(self.constrained_layers)  # the layers themselves are checked once L is known
        if not is_number(self.noise_gamma) or self.noise_gamma < 0.0:
            fail("noise_gamma", "a finite number >= 0")
        if not is_number(self.noise_mean):
            fail("noise_mean", "a finite number")
        if not isinstance(self.noise_at_eval, bool):
            fail("noise_at_eval", "True or False")
        fraction = self.layer_loss_token_fraction
        if fraction is not None and (not is_number(fraction) or not 0.0 < fraction <= 1.0):
            fail("layer_loss_token_fraction", "None or a number in (0, 1]")
        fraction = 1.0 if fraction is None else fraction
        if self.dual_token_fraction is not None and (
            not is_number(self.dual_token_fraction) or not 0.0 < self.dual_token_fraction <= fraction
        ):
            fail("dual_token_fraction", f"None or a number in (0, layer_loss_token_fraction = {fraction}]")
        self.layer_loss_budget = _optional_number(self.layer_loss_budget, "layer_loss_budget")
        if self.layer_loss_budget is not None:
            if not is_number(self.layer_loss_budget) or self.layer_loss_budget <= 0.0:
                fail("layer_loss_budget", "None (set the cost options yourself) or a number > 0")
            chosen = [name for name in ("layer_sample_size", "layer_loss_token_fraction", "dual_token_fraction")
                      if getattr(self, name) is not None]  # fmt: skip
            if chosen:
                raise ValueError(
                    f"`layer_loss_budget` ({self.layer_loss_budget}) chooses layer_sample_size, "
                    "layer_loss_token_fraction "
                    f"and dual_token_fraction for the model, but {', '.join(chosen)} is set too; set "
                    "`layer_loss_budget=None` to choose them yourself."
                )
        if self.layer_sample_size is not None and not is_positive_int(self.layer_sample_size):
            fail("layer_sample_size", "None (every layer) or an integer >= 1")
        if self.layer_sampling not in LAYER_SAMPLING:
            fail("layer_sampling", " or ".join(repr(x) for x in LAYER_SAMPLING))
        if not is_positive_int(self.layer_loss_interval):
            fail("layer_loss_interval", "an integer >= 1")
        if not is_number(self.deep_supervision_weight) or self.deep_supervision_weight < 0.0:
            fail("deep_supervision_weight", "a finite number >= 0")
        if self.constrained and self.deep_supervision_weight > 0.0:
            raise ValueError(
                "`deep_supervision_weight` applies only with `constrained=False` (the deep-supervision baseline); "
                f"got deep_supervision_weight={self.deep_supervision_weight} with constrained=True."
            )
        if self.noise_gamma > 0.0 and getattr(self, "neftune_noise_alpha", None):
            warnings.warn(
                "Both `noise_gamma` and `neftune_noise_alpha` are set: the embeddings get NEFTune's uniform noise and "
                "hf-cut's Gaussian noise on top of each other in training.",
                UserWarning,
                stacklevel=3,
            )


@dataclass
class ConstrainedSFTConfig(ConstraintArguments, SFTConfig):
    r"""
    Configuration of [`ConstrainedSFTTrainer`]: every field of TRL's [`~trl.SFTConfig`] plus the constraint options
    of [`ConstraintArguments`]. Activation checkpointing is on by default, as in TRL, but set under transformers 5's
    name (`activation_checkpointing`): TRL's default sets the deprecated `gradient_checkpointing`, which warns on every
    config. `gradient_checkpointing=…` given by the user is still honoured (with transformers' warning).
    """

    activation_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Recompute activations in backward to save memory (unset: on, TRL's default)."},
    )
    gradient_checkpointing: bool | None = field(
        default=None,
        metadata={"help": "Deprecated name of `activation_checkpointing` (transformers 5); still honoured."},
    )

    def __post_init__(self) -> None:
        if self.activation_checkpointing is None and self.gradient_checkpointing is None:
            self.activation_checkpointing = True  # TRL's default, set under the current name
        super().__post_init__()


@dataclass
class ConstrainedTrainingArguments(ConstraintArguments, TrainingArguments):
    r"""
    Configuration of [`ConstrainedTrainer`]: every field of [`~transformers.TrainingArguments`] plus the constraint
    options of [`ConstraintArguments`]. `layer_loss_interval` defaults to 1 here: a classifier's or regressor's head
    costs next to nothing against its encoder, so every step trains every layer.
    """

    layer_loss_interval: int = field(
        default=1,
        metadata={"help": "K: train the intermediate layer losses every K-th optimizer step only, >= 1."},
    )
    layer_loss_budget: str | None = field(
        default=None,
        metadata={"help": "Unused by classifiers (their head costs next to nothing): every layer, every example."},
    )


def constraint_options(args: ConstraintArguments) -> dict:
    """Every constraint option of ``args`` by name (the fields of :class:`ConstraintArguments`): what a run's summary
    records, so that no option can be left out of it."""
    return {f.name: getattr(args, f.name) for f in fields(ConstraintArguments)}
