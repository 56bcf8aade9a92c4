"""The causal-LM task: prompt/completion rows scored on their completion tokens through the layer readout of
:mod:`hf_cut.readout`, every token weighted alike; the metric is the last layer's token accuracy."""

from __future__ import annotations

import torch

from .lm_data import batches, prepare_rows
from .stats import per_example_layer_losses
from ...noise import EmbeddingNoise
from ...readout import LayerReadoutRequest, add_layer_readout, base_model, num_layers
from ...readout.causal_lm import PENDING_ATTRIBUTE
from . import BatchScore, EvalSession, Task

__all__ = ["CAUSAL_LM", "CAUSAL_LM_EVERY_LAYER", "ensure_readout", "open_session"]


def load(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ...models.smollm2 import resolve_model_name

    path = resolve_model_name(path)  # "smollm2": the packaged SmolLM2-135M-Instruct
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def prepare(models, options: dict):
    """The held-out split: ``dataset`` None (the built-in one), a Hub name or local path
    (:func:`hf_cut.data.load_instruction_dataset`, its ``test`` split) or a ``datasets.Dataset`` used as given; its
    first ``limit`` rows."""
    from datasets import Dataset

    from ...data import load_instruction_dataset

    dataset, limit = options.pop("dataset", None), options.pop("limit", None)
    in_memory = isinstance(dataset, Dataset)
    eval_set = dataset if in_memory else load_instruction_dataset(dataset or "builtin")["test"]
    if limit is not None:
        eval_set = eval_set.select(range(min(limit, len(eval_set))))
    return eval_set, {"dataset": "in-memory" if in_memory else dataset or "builtin"}, {}


def ensure_readout(model) -> None:
    """Patch the layer readout into ``model`` (as the trainer does) unless it is patched already."""
    base = base_model(model)
    if not hasattr(base, PENDING_ATTRIBUTE):
        add_layer_readout(base)


def open_session(model, tokenizer, dataset, batch_size: int, noise=None, **_) -> EvalSession:
    """A session over ``dataset`` prepared as ``SFTTrainer`` prepares it (:mod:`.lm_data`), on the model's device (a
    model on the CPU moves to the GPU when there is one), with the layer readout patched in and ``noise`` (or a hook
    of the session's own, removed on close)."""
    ensure_readout(model)
    if torch.cuda.is_available() and all(p.device.type == "cpu" for p in model.parameters()):
        model.to("cuda")
    device = next(model.parameters()).device
    rows = prepare_rows(dataset, tokenizer)
    if not rows:
        raise ValueError("The evaluation set has no completion token to score.")
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    owns = noise is None
    if owns:
        noise = EmbeddingNoise().attach(base_model(model))
    return EvalSession(model=model, batches=lambda: batches(rows, batch_size, pad, device), noise=noise,
                       owns_noise=owns)  # fmt: skip


def _score(session: EvalSession, batch, request: LayerReadoutRequest):
    """The readout's pass on a batch: its output, and the batch's layer-loss sums, token count and per-example losses
    (the metric sums left to the caller)."""
    out = session.model(**batch, use_cache=False, layer_readout=request)
    per_example, _ = per_example_layer_losses(
        out.layer_token_log_probs, out.token_positions, batch["input_ids"].shape[0]
    )
    return out, BatchScore(-out.layer_token_log_probs.double().sum(1), out.num_tokens.item(), per_example.cpu())


def score(session: EvalSession, batch) -> BatchScore:
    out, scored = _score(session, batch, LayerReadoutRequest(return_token_log_probs=True))
    scored.metric_sums["correct"] = out.is_top1.sum().item()
    return scored


def finish(session: EvalSession, layer_losses: list[float], count: float, sums: dict[str, float]) -> dict:
    if not count:
        raise ValueError("The evaluation set has no completion token to score.")
    return {"loss": layer_losses[-1], "token_accuracy": sums["correct"] / count, "layer_losses": layer_losses,
            "num_tokens": int(count)}  # fmt: skip


def score_every_layer(session: EvalSession, batch) -> BatchScore:
    """:func:`score`, plus the top-1 hits of every layer's readout (``metric_sums["layer_correct"]``, ``[L + 1]``)."""
    request = LayerReadoutRequest(
        grad_layers=[False] * num_layers(session.model), return_token_log_probs=True, return_layer_top1=True
    )
    out, scored = _score(session, batch, request)
    hits = out.layer_is_top1.double().sum(1)
    scored.metric_sums.update(correct=hits[-1].item(), layer_correct=hits)
    return scored


def finish_every_layer(session: EvalSession, layer_losses: list[float], count: float, sums: dict) -> dict:
    """:func:`finish`, plus ``layer_token_accuracy`` (the top-1 accuracy of every layer's readout)."""
    return {**finish(session, layer_losses, count, sums),
            "layer_token_accuracy": (sums["layer_correct"] / max(count, 1)).tolist()}  # fmt: skip


# every layer's accuracy too (early exit: the quality of each truncation)
SCALARS = ("loss", "token_accuracy", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")
CAUSAL_LM_EVERY_LAYER = Task("causal_lm", load, open_session, score_every_layer, finish_every_layer, weighting="token",
                             metric="token_accuracy", prepare=prepare, scalars=SCALARS)  # fmt: skip
CAUSAL_LM = Task("causal_lm", load, open_session, score, finish, weighting="token", metric="token_accuracy",
                 prepare=prepare, scalars=SCALARS)  # fmt: skip
