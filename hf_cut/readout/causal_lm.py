"""Layer losses of a causal LM through its shared readout ψ = final norm, then ``lm_head``.

:func:`add_layer_readout` patches a model's ``forward`` so that ``model(..., layer_readout=LayerReadoutRequest())``
runs the backbone once with every hidden state and scores the completion tokens at every layer, returning a
:class:`LayerwiseCausalLMOutput`. The readout runs *inside* the model's forward, so DDP synchronises its gradients,
ZeRO-3 / FSDP gather the head and the norm, and PEFT wrappers pass the call through, exactly as for the model's own
loss. The logits are never materialised: the (layer, token) rows go through TRL's chunked log-probability kernel,
which projects in tiles and recomputes them in backward — the last layer in a call of its own (with TRL's entropy
and top-1 metrics), the other layers in calls of at most as many rows, so no tile is taller than the last layer's.

Hidden states: HF returns ``h_0`` (the embeddings) … ``h_L``; the intermediate ones are un-normalised while the last
one is already normalised, so ψ normalises ``h_0 … h_{L−1}`` and reads ``last_hidden_state`` as the model's own head
does: each state is normalised exactly once.
"""

from __future__ import annotations

import contextlib
import functools
import types
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from transformers.utils import ModelOutput
from trl.kernels import ChunkedLogProbFunction

from . import num_layers
from .final_modules import FinalModules

__all__ = [
    "FINAL_NORM_NAMES",
    "LayerReadoutRequest",
    "LayerwiseCausalLMOutput",
    "add_layer_readout",
    "find_final_norm",
    "pending_layer_readout",
    "token_losses",
    "validate_causal_lm",
]

# The attribute names the final norm was looked up by before hf-cut 0.2; no longer consulted (the modules are read off
# the model's forward, hf_cut.readout.final_modules). Kept for one release for code that imports it.
FINAL_NORM_NAMES = ("norm", "ln_f", "final_layer_norm", "final_layernorm", "norm_f", "final_norm")
_VOCAB_CHUNK = 32768


@dataclass
class LayerReadoutRequest:
    """What the patched forward should compute.

    Args:
        token_fraction: share of the completion tokens on which ``ℓ_0 … ℓ_{L−1}`` are estimated (drawn uniformly
            without replacement with torch's RNG, the same tokens for every layer).
        grad_layers: for ``l = 0 … L−1``, whether ``ℓ_l`` needs a gradient; the others are scored under
            ``torch.no_grad`` (their values still feed the dual step and the logs). ``None``: all of them.
        return_token_log_probs: also return the per-token log-probabilities of every layer on the sampled tokens
            and their positions (for per-example statistics at evaluation).
        dual_token_fraction: share of the completion tokens on which the layer *values* are estimated (the dual
            step, the logs): the layers without grad are scored on these tokens only, the first of the gradient's
            sample, so every layer's value is a mean over the same tokens. ``None``: ``token_fraction``; never more.
        return_layer_top1: also return, for every layer without grad and the last one, whether the target is the
            top-1 token of that layer's readout on the value sample (early-exit token accuracy at evaluation).
        loss_type: the per-token loss of every layer, ``"nll"`` or ``"dft"`` (:func:`token_losses`), so that the
            layer losses and the last layer's are the same loss as TRL's ``SFTTrainer`` trains with that option.
        output: set by the forward that served the request (:func:`pending_layer_readout`): its
            :class:`LayerwiseCausalLMOutput`.
    """

    token_fraction: float = 1.0
    grad_layers: list[bool] | None = None
    return_token_log_probs: bool = False
    dual_token_fraction: float | None = None
    return_layer_top1: bool = False
    loss_type: str = "nll"
    output: Any = field(default=None, repr=False, compare=False)


def token_losses(log_probs: torch.Tensor, loss_type: str = "nll") -> torch.Tensor:
    """Per-token loss from log p(target), as TRL's ``SFTTrainer`` defines ``loss_type``: ``"nll"`` is ``−log p``,
    ``"dft"`` (Dynamic Fine-Tuning, arXiv 2508.05629) is ``−log p · sg(p)``."""
    if loss_type == "dft":
        return -log_probs * log_probs.detach().exp()
    return -log_probs


@dataclass
class LayerwiseCausalLMOutput(ModelOutput):
    """Output of the layerwise forward.

    Attributes:
        loss: last-layer mean negative log-likelihood over all completion tokens (divided by ``num_items_in_batch``
            when given, as TRL's ``SFTTrainer`` does).
        layer_losses: ``[L + 1]`` mean NLL ``ℓ_0 … ℓ_L`` on the value sample (``dual_token_fraction``; all tokens at
            fraction 1); the last entry is the last layer on the same sample, so that slacks compare like with like.
        grad_layer_losses: ``[L + 1]`` the same on the gradient's larger sample (``token_fraction``) for the layers
            with grad and the last one, the values elsewhere; ``None`` when both samples are the same.
        log_probs / entropy / is_top1 / label_mask: last-layer per-position values, zero on ignored positions.
        num_tokens: completion tokens in the batch; num_sampled_tokens: tokens the layer losses were estimated on.
        layer_token_log_probs: ``[L + 1, k]`` log p(target) of every layer on the sampled tokens (on request).
        token_positions: ``[k]`` (row, position) of those tokens in the shifted ``[batch, seq − 1]`` grid, as a
            ``[k, 2]`` tensor (on request).
        layer_is_top1: ``[L + 1, k]`` target is the layer's top-1 token (on request; layers without grad only).
    """

    loss: torch.Tensor | None = None
    layer_losses: torch.Tensor | None = None
    grad_layer_losses: torch.Tensor | None = None
    log_probs: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    is_top1: torch.Tensor | None = None
    label_mask: torch.Tensor | None = None
    num_tokens: torch.Tensor | None = None
    num_sampled_tokens: torch.Tensor | None = None
    layer_token_log_probs: torch.Tensor | None = None
    token_positions: torch.Tensor | None = None
    layer_is_top1: torch.Tensor | None = None


def find_final_norm(backbone: nn.Module) -> FinalModules:
    """ψ before the head of a decoder backbone: the modules its own forward applies after its last layer (the final
    norm, and whatever follows it), found by a probe forward (:mod:`hf_cut.readout.final_modules`). ``ValueError``
    naming the model when its layers cannot be found or the probe fails."""
    return FinalModules(backbone, num_layers(backbone))


def _logit_transform(model: nn.Module) -> tuple[float | None, float]:
    """(final_logit_softcapping, logit_scale) as the model's own head applies them."""
    config = model.config.get_text_config()
    softcap = getattr(config, "final_logit_softcapping", None)
    for name in ("logit_scale", "output_multiplier", "lm_head_multiplier"):
        if getattr(config, name, None) is not None:
            return softcap, float(getattr(config, name))
    scaling = getattr(config, "logits_scaling", None)
    if scaling is not None:
        return softcap, float(scaling if config.model_type == "hyperclovax" else 1.0 / scaling)
    return softcap, 1.0


def validate_causal_lm(model: nn.Module) -> None:
    """Check that ``model`` exposes what the readout needs; ``ValueError`` otherwise (before any compute)."""
    if getattr(model, "get_output_embeddings", None) is None or model.get_output_embeddings() is None:
        raise ValueError(f"{type(model).__name__} has no output embeddings (`lm_head`) to use as the shared readout.")
    num_layers(model)


PENDING_ATTRIBUTE = "hf_cut_pending_readout"


@contextlib.contextmanager
def pending_layer_readout(model: nn.Module, request: LayerReadoutRequest):
    """Within the block, the next forward of ``model`` (patched by :func:`add_layer_readout`) called with
    ``fused_lm_head=True`` — TRL's own loss forward in ``SFTTrainer.compute_loss`` — is served by the layer readout
    for ``request``, and its output is left in ``request.output``. Its ``log_probs``, ``entropy``, ``is_top1`` and
    ``label_mask`` are those of TRL's fused head, so TRL computes its loss and its metrics from them as usual."""
    setattr(model, PENDING_ATTRIBUTE, request)
    try:
        yield request
    finally:
        setattr(model, PENDING_ATTRIBUTE, None)


def add_layer_readout(model: nn.Module) -> None:
    """Patch ``model.forward`` (a ``*ForCausalLM``) with the layerwise readout; without ``layer_readout`` (or a
    :func:`pending_layer_readout`) the forward is the previous one (TRL's fused head, or the model's own), so
    generation is unchanged.

    Apply it to the model that owns the LM head (for PEFT, ``peft_model.get_base_model()``): PEFT forwards unknown
    keyword arguments to it.
    """
    validate_causal_lm(model)
    previous_forward = model.forward
    transform = _logit_transform(model)
    final = find_final_norm(model.base_model)
    setattr(model, PENDING_ATTRIBUTE, None)

    @functools.wraps(type(model).forward)
    def forward(self, *args, layer_readout: LayerReadoutRequest | None = None, **kwargs):
        pending = getattr(self, PENDING_ATTRIBUTE, None)
        if layer_readout is None and pending is not None and kwargs.get("fused_lm_head"):
            layer_readout = pending
            setattr(self, PENDING_ATTRIBUTE, None)  # one forward per request
        if layer_readout is None:
            return previous_forward(*args, **kwargs)
        batch = _run_backbone(self, args, kwargs, final)
        sample = _draw_token_sample(layer_readout, batch)
        scores = _score_layers(self, layer_readout, batch, sample, transform)
        layer_readout.output = _assemble_output(layer_readout, batch, sample, scores)
        return layer_readout.output

    model.forward = types.MethodType(forward, model)


@dataclass
class _Batch:
    """The backbone's pass: every state flattened to ``[rows, hidden]``, the completion positions and targets."""

    flat: list[torch.Tensor]  # h_0 … h_L (h_L already normalised by the model), rows of the shifted grid
    mask: torch.Tensor  # [batch, seq − 1] completion positions
    valid: torch.Tensor  # [n] their flat row indices
    targets: torch.Tensor  # [n] their next tokens
    head: nn.Module
    norm: FinalModules
    num_items_in_batch: torch.Tensor | int | None

    @property
    def n(self) -> int:
        return self.valid.numel()

    @property
    def num_layers(self) -> int:
        return len(self.flat) - 1


@dataclass
class _Sample:
    """The gradient's token sample (``k`` rows, a random subset without replacement) and the value sample (its
    first ``k_v`` rows); ``perm`` is None when both are every completion token in order."""

    k: int
    k_v: int
    perm: torch.Tensor | None
    grad_rows: torch.Tensor
    grad_targets: torch.Tensor


def _run_backbone(model: nn.Module, args, kwargs, final: FinalModules) -> _Batch:
    """One backbone pass with every hidden state; the labels shifted (or taken pre-shifted) to the readout's grid."""
    labels = kwargs.pop("labels")
    shift_labels = kwargs.pop("shift_labels", None)
    num_items_in_batch = kwargs.pop("num_items_in_batch", None)
    kwargs.pop("fused_lm_head", None)
    kwargs.update(use_cache=False, output_hidden_states=True, return_dict=True)
    backbone = model.base_model
    with final.recorded(backbone):
        out = backbone(*args, **kwargs)
    final.check_hidden_states(out.hidden_states)
    states = list(out.hidden_states[:-1]) + [out.last_hidden_state]
    if shift_labels is None:  # predict token t + 1 from position t
        states = [h[:, :-1] for h in states]
        labels = labels[:, 1:]
    else:  # pre-shifted labels (context / sequence parallelism)
        labels = shift_labels
    head = model.get_output_embeddings()
    labels = labels.to(head.weight.device)
    mask = labels != -100
    valid = mask.reshape(-1).nonzero().squeeze(1)
    flat = [h.reshape(-1, h.size(-1)).to(head.weight.device) for h in states]
    return _Batch(flat, mask, valid, labels.reshape(-1)[valid], head, final, num_items_in_batch)


def _draw_token_sample(request: LayerReadoutRequest, batch: _Batch) -> _Sample:
    """Gradient sample: k tokens; value sample: its first k_v (<= k), so both are uniform without replacement."""
    n, fraction = batch.n, request.token_fraction
    value_fraction = fraction if request.dual_token_fraction is None else request.dual_token_fraction
    k = n if fraction >= 1.0 else min(n, max(1, round(fraction * n)))
    k_v = k if value_fraction >= fraction else min(k, max(1, round(value_fraction * n)))
    perm = torch.randperm(n, device=batch.valid.device) if fraction < 1.0 or k_v < n else None
    grad_rows = batch.valid if perm is None else batch.valid[perm[:k]]
    grad_targets = batch.targets if perm is None else batch.targets[perm[:k]]
    return _Sample(k, k_v, perm, grad_rows, grad_targets)


@dataclass
class _Scores:
    last_logp: torch.Tensor  # [n] log p(target) of the last layer on every completion token
    last_entropy: torch.Tensor
    last_top1: torch.Tensor
    grad_logp: list[torch.Tensor | None]  # per layer, on the gradient's sample (layers with grad, and the last)
    value_logp: list[torch.Tensor]  # per layer, on the value sample
    top1: list[torch.Tensor | None]  # per layer, on the value sample (on request)
    with_grad: list[int]


def _score_layers(model: nn.Module, request: LayerReadoutRequest, batch: _Batch, sample: _Sample,
                  transform: tuple[float | None, float]) -> _Scores:  # fmt: skip
    """log p(target) of every layer: the last on every token (with TRL's entropy and top-1), the layers with grad on
    the gradient's sample, the others under ``no_grad`` on the value sample."""
    n, L, k, k_v, perm = batch.n, batch.num_layers, sample.k, sample.k_v, sample.perm
    softcap, logit_scale = transform
    grad_layers = request.grad_layers or [True] * L
    if len(grad_layers) != L:
        raise ValueError(f"`grad_layers` has {len(grad_layers)} entries, the model has {L} readout layers.")
    with_grad = [l for l in range(L) if grad_layers[l]]
    without_grad = [l for l in range(L) if not grad_layers[l]]

    # ℓ_L on every completion token, with TRL's metrics (entropy, top-1) from the same pass
    last_logp, last_entropy, last_top1 = _chunked_log_probs(
        batch.head, batch.flat[L][batch.valid], batch.targets, softcap, logit_scale, ("log_probs", "entropy", "is_top1")
    )
    grad_logp: list[torch.Tensor | None] = [None] * L + [last_logp if perm is None else last_logp[perm[:k]]]
    top1: list[torch.Tensor | None] = [None] * L + [last_top1 if perm is None else last_top1[perm[:k_v]]]

    def score(layer_ids: list[int], rows_idx: torch.Tensor, rows_targets: torch.Tensor) -> list[torch.Tensor]:
        # log p(target) of the layers in `layer_ids` on `rows_idx`. The layers share kernel calls (one head gather and
        # one weight-gradient buffer per call) of at most n rows, so no call builds a taller logits tile than the
        # last layer's loss alone: the readout's peak memory is that of SFT's loss.
        rows_n, result = rows_idx.numel(), []
        per_call = max(1, n // max(rows_n, 1))
        outputs = ("log_probs", "is_top1") if request.return_layer_top1 else ("log_probs",)
        for start in range(0, len(layer_ids), per_call):
            group = layer_ids[start : start + per_call]
            normed = [batch.norm(batch.flat[l][rows_idx]) for l in group]
            # outside autocast: CPU autocast's cat refuses float16 rows under bfloat16 (a float16 model, bf16=True)
            with torch.autocast(normed[0].device.type, enabled=False):
                rows = torch.cat(normed)
            logp, _, is_top1 = _chunked_log_probs(
                batch.head, rows, rows_targets.repeat(len(group)), softcap, logit_scale, outputs
            )
            result += [logp[i * rows_n : (i + 1) * rows_n] for i in range(len(group))]
            for i, l in enumerate(group):
                if is_top1 is not None:
                    top1[l] = is_top1[i * rows_n : (i + 1) * rows_n]
        return result

    for l, logp in zip(with_grad, score(with_grad, sample.grad_rows, sample.grad_targets)):
        grad_logp[l] = logp
    value_logp = [None if lp is None else lp[:k_v] for lp in grad_logp]
    with torch.no_grad():
        for l, logp in zip(without_grad, score(without_grad, sample.grad_rows[:k_v], sample.grad_targets[:k_v])):
            value_logp[l] = logp
    return _Scores(last_logp, last_entropy, last_top1, grad_logp, value_logp, top1, with_grad)


def _assemble_output(request: LayerReadoutRequest, batch: _Batch, sample: _Sample,
                     scores: _Scores) -> LayerwiseCausalLMOutput:  # fmt: skip
    """Layer losses on the value sample (and on the gradient's, when larger), the last layer's loss normalised as
    TRL's ``SFTTrainer`` does, and the per-token outputs asked for."""
    n, mask = batch.n, batch.mask

    def mean_nll(logps: list[torch.Tensor]) -> torch.Tensor:
        if n == 0:  # no completion token: differentiable zeros rather than 0 / 0
            return torch.stack([lp.sum() for lp in logps])
        return torch.stack([token_losses(lp, request.loss_type).mean() for lp in logps])

    def scatter(values: torch.Tensor) -> torch.Tensor:
        return values.new_zeros(mask.shape).masked_scatter(mask, values)

    layer_losses = mean_nll(scores.value_logp)
    grad_layer_losses = None
    if sample.k_v < sample.k:
        grad_layer_losses = mean_nll([v if g is None else g for g, v in zip(scores.grad_logp, scores.value_logp)])
    denom = mask.sum() if batch.num_items_in_batch is None else batch.num_items_in_batch
    loss = token_losses(scores.last_logp, request.loss_type).sum() / torch.as_tensor(denom).clamp(min=1)
    token_log_probs = positions = None
    if request.return_token_log_probs:
        token_log_probs = torch.stack([lp.detach() for lp in scores.value_logp])
        value_rows, width = sample.grad_rows[: sample.k_v], mask.shape[1]
        positions = torch.stack([value_rows // width, value_rows % width], dim=1)
    return LayerwiseCausalLMOutput(
        loss=loss,
        layer_losses=layer_losses,
        grad_layer_losses=grad_layer_losses,
        log_probs=scatter(scores.last_logp),
        entropy=scatter(scores.last_entropy.detach()),
        is_top1=scatter(scores.last_top1),
        label_mask=mask,
        num_tokens=mask.sum(),
        num_sampled_tokens=torch.as_tensor(sample.k_v, device=mask.device),
        layer_token_log_probs=token_log_probs,
        token_positions=positions,
        layer_is_top1=torch.stack(scores.top1) if request.return_layer_top1 and not scores.with_grad else None,
    )


def _gather_sharded(param: torch.Tensor) -> torch.Tensor:
    """The full tensor of an FSDP2-sharded parameter read outside its module's forward (the head as its own FSDP unit).

    Its gradient must then be averaged over the ranks, as FSDP averages the gradients it reduces itself: the default
    ``full_tensor()`` backward keeps each rank's own contribution only (each rank's shard would hold its own
    micro-batch's gradient). ``Partial("avg")`` makes the backward a reduce-scatter with averaging.
    """
    from torch.distributed.tensor import Partial

    return param.full_tensor(grad_placements=[Partial("avg")] * param.device_mesh.ndim)


def _chunked_log_probs(
    head: nn.Module,
    hidden: torch.Tensor,
    targets: torch.Tensor,
    softcap: float | None,
    logit_scale: float,
    outputs: tuple[str, ...] = ("log_probs",),
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Per-row (log p(target), entropy, target is top-1) of ``head(hidden)`` without building the logits; entropy and
    top-1 are ``None`` unless named in ``outputs`` (each costs passes over every tile)."""
    weight, bias = head.weight, head.bias
    if hasattr(weight, "full_tensor"):  # FSDP2 DTensor: gather the head once for every tile
        weight, bias = _gather_sharded(weight), (_gather_sharded(bias) if bias is not None else None)
    # ZeRO-3 needs no explicit gather here (unlike TRL's fused loss, which reads the head in `compute_loss`): the
    # readout runs inside the model's forward, where DeepSpeed gathers a partitioned parameter on first read and
    # registers it as an external parameter of the running module, to be fetched again for the backward
    # (tests/test_distributed.py::test_trainer_under_a_sharded_engine_matches_one_process[zero3])
    vocab_chunk = min(_VOCAB_CHUNK, weight.shape[0])
    logp, entropy, _, _, is_top1 = ChunkedLogProbFunction.apply(
        hidden, weight, bias, targets, 1.0, vocab_chunk, softcap, logit_scale, outputs
    )
    return logp, entropy, is_top1
