"""The causal-LM task: prompt/completion rows scored on their completion tokens through the layer readout of
:mod:`hf_cut.readout`, every token weighted alike; the metric is the last layer's token accuracy."""

from __future__ import annotations

import tempfile

import torch

from .stats import per_example_layer_losses
from ...readout import LayerReadoutRequest, num_layers
from . import BatchScore, EvalSession, Task

__all__ = ["CAUSAL_LM", "CAUSAL_LM_EVERY_LAYER", "eval_trainer", "session_from_trainer"]


def load(path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ...models.smollm2 import resolve_model_name

    path = resolve_model_name(path)  # "smollm2": the packaged SmolLM2-135M-Instruct
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def eval_trainer(model, tokenizer, dataset, batch_size: int):
    """A ConstrainedSFTTrainer used only for TRL's preprocessing, collator, the readout and its noise hook (never
    trains)."""
    from ...config import ConstrainedSFTConfig
    from ...trainer import ConstrainedSFTTrainer

    args = ConstrainedSFTConfig(
        output_dir=tempfile.mkdtemp(prefix="hf_cut_sweep_"),
        constrained=False,
        per_device_eval_batch_size=batch_size,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    # SFTTrainer requires a train set; one example keeps its preprocessing negligible
    return ConstrainedSFTTrainer(
        model=model, args=args, train_dataset=dataset.select(range(1)), eval_dataset=dataset, processing_class=tokenizer
    )


def session_from_trainer(trainer) -> EvalSession:
    """A session over a trainer's eval set and its own noise hook (attached for the session when the trainer has it
    detached, as it has outside ``train()``)."""

    def batches():
        for batch in trainer.get_eval_dataloader():
            yield trainer._prepare_inputs(batch)

    owns = not trainer.noise.attached
    if owns:
        trainer.noise.attach(trainer.noise_target)
    return EvalSession(model=trainer.model, batches=batches, noise=trainer.noise, owns_noise=owns,
                       state={"trainer": trainer})  # fmt: skip


def open_session(model, tokenizer, dataset, batch_size: int, noise=None, **_) -> EvalSession:
    session = session_from_trainer(eval_trainer(model, tokenizer, dataset, batch_size))
    return session


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
CAUSAL_LM_EVERY_LAYER = Task("causal_lm", load, open_session, score_every_layer, finish_every_layer, weighting="token",
                             metric="token_accuracy")  # fmt: skip
CAUSAL_LM = Task("causal_lm", load, open_session, score, finish, weighting="token", metric="token_accuracy")
