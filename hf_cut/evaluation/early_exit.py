"""Early exit from a causal LM: the quality of every truncation, self-speculative decoding, truncated checkpoints.

- :func:`layers_kept_quality`: held-out loss and token accuracy of ``ψ(h_k)`` for every ``k = 0 … L`` — the model cut
  after ``k`` layers and read out by its own final norm and ``lm_head``, which is what an early exit computes.
- :func:`speculative_decoding`: transformers' self-speculative decoding (``generate(..., assistant_early_exit=k)``:
  the first k layers draft, the full model verifies) against plain greedy decoding, prompt by prompt: tokens per
  second, the share of drafted tokens the full model accepts, and whether the outputs are identical.
- :func:`save_truncated`: a checkpoint of the first ``k`` layers that loads with ``AutoModelForCausalLM``.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Sequence
from contextlib import contextmanager

import torch
from tqdm.auto import tqdm

from ..files import atomic_write
from ..readout import num_layers

__all__ = ["layers_kept_quality", "save_truncated", "speculative_decoding"]


@torch.inference_mode()
def layers_kept_quality(model, tokenizer, dataset, batch_size: int = 16, gamma: float = 0.0, seed: int = 0) -> dict:
    """Loss and token accuracy of the readout of every layer on ``dataset`` (prompt/completion rows, completion
    tokens scored). Returns ``{"layers": [0 … L], "loss": [...], "token_accuracy": [...], "num_tokens": n}``;
    ``gamma`` > 0 perturbs the input embeddings as the γ sweep does (``torch.manual_seed(seed)`` first)."""
    from .tasks.causal_lm import CAUSAL_LM_EVERY_LAYER as task
    from .engine import evaluate

    session = task.open(model, tokenizer, dataset, batch_size)
    try:
        record = evaluate(task, session, gamma, seed, alpha=0.5)
    finally:
        session.close()
    return {
        "layers": list(range(len(record["layer_losses"]))),
        "loss": record["layer_losses"],
        "token_accuracy": record["layer_token_accuracy"],
        "num_tokens": record["num_tokens"],
    }


@contextmanager
def _record_acceptance():
    """Count drafted and accepted tokens of every early-exit speculation round (transformers' candidate generator
    reports ``num_matches`` of ``len(scores[0]) - 1`` candidates to ``update_candidate_strategy``)."""
    from transformers.generation.candidate_generator import EarlyExitCandidateGenerator

    counts = {"drafted": 0, "accepted": 0, "rounds": 0}
    original = EarlyExitCandidateGenerator.update_candidate_strategy

    def update(self, input_ids, scores, num_matches):
        counts["drafted"] += scores.shape[1] - 1
        counts["accepted"] += int(num_matches)
        counts["rounds"] += 1
        return original(self, input_ids, scores, num_matches)

    EarlyExitCandidateGenerator.update_candidate_strategy = update
    try:
        yield counts
    finally:
        EarlyExitCandidateGenerator.update_candidate_strategy = original


@torch.inference_mode()
def speculative_decoding(
    model, tokenizer, prompts: Sequence[str], early_exit: int, max_new_tokens: int = 32, warmup: int = 1,
    progress: bool = True,
) -> dict:  # fmt: skip
    """Greedy decoding of each prompt (batch 1) plainly and with ``assistant_early_exit=early_exit``, interleaved.

    Returns ``tokens_per_s`` and ``baseline_tokens_per_s`` (new tokens over the summed wall time of all prompts),
    ``speedup``, ``acceptance_rate`` (accepted / drafted tokens), ``identical_outputs`` (every prompt), and the
    counts. The first ``warmup`` prompts are decoded once both ways before timing.
    """
    if not 1 <= early_exit < num_layers(model):
        raise ValueError(
            f"`early_exit` must be in 1 … {num_layers(model) - 1} (the model has {num_layers(model)} layers)"
        )
    model.eval()
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    kwargs = dict(
        max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad, top_p=None, top_k=None, temperature=None
    )
    encoded = [tokenizer(p, return_tensors="pt", add_special_tokens=False).to(model.device) for p in prompts]

    def decode(inputs, **extra) -> tuple[torch.Tensor, float]:
        start = time.perf_counter()
        out = model.generate(**inputs, **kwargs, **extra)
        return out[0, inputs["input_ids"].shape[1] :], time.perf_counter() - start

    for inputs in encoded[:warmup]:
        decode(inputs)
        decode(inputs, assistant_early_exit=early_exit)
    plain_s = spec_s = 0.0
    plain_tokens = spec_tokens = 0
    identical = []
    with _record_acceptance() as counts:
        for inputs in tqdm(encoded, desc=f"early exit {early_exit}", disable=not progress):
            plain, seconds = decode(inputs)
            plain_s, plain_tokens = plain_s + seconds, plain_tokens + plain.numel()
            drafted, seconds = decode(inputs, assistant_early_exit=early_exit)
            spec_s, spec_tokens = spec_s + seconds, spec_tokens + drafted.numel()
            identical.append(torch.equal(plain, drafted))
    tokens_per_s, baseline = spec_tokens / spec_s, plain_tokens / plain_s
    return {
        "assistant_early_exit": early_exit,
        "tokens_per_s": tokens_per_s,
        "baseline_tokens_per_s": baseline,
        "speedup": tokens_per_s / baseline,
        "acceptance_rate": counts["accepted"] / max(counts["drafted"], 1),
        "identical_outputs": all(identical),
        "identical_prompts": sum(identical),
        "prompts": len(encoded),
        "new_tokens": spec_tokens,
        "drafted_tokens": counts["drafted"],
        "accepted_tokens": counts["accepted"],
        "speculation_rounds": counts["rounds"],
        "max_new_tokens": max_new_tokens,
    }


def save_truncated(model, k: int, path: str | os.PathLike, tokenizer=None, quality: dict | None = None) -> str:
    """Write the model cut after its first ``k`` decoder layers (final norm and ``lm_head`` kept) to ``path``.

    The result is a plain checkpoint of the same architecture with ``num_hidden_layers = k``:
    ``AutoModelForCausalLM.from_pretrained(path)`` computes exactly the readout ``ψ(h_k)`` of the full model. Its
    ``README.md`` says which layers were kept, and the measured quality when ``quality`` (the output of
    :func:`layers_kept_quality` on the full model) is given.
    """
    L = num_layers(model)
    if not 1 <= k <= L:
        raise ValueError(f"`k` must be in 1 … {L} (the model has {L} layers), got {k}.")
    small = copy.deepcopy(model)
    backbone = small.base_model
    layers = getattr(backbone, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"{type(backbone).__name__} keeps no `layers` list: cannot truncate it.")
    backbone.layers = layers[:k]
    config = small.config
    config.num_hidden_layers = k
    if getattr(config, "layer_types", None) is not None:
        config.layer_types = config.layer_types[:k]
    small.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    lines = [
        "---",
        "library_name: transformers",
        "tags: [hf-cut, early-exit]",
        "---",
        "",
        f"# {os.path.basename(os.path.normpath(str(path)))}",
        "",
        f"The first {k} of the {L} decoder layers of `{model.config.name_or_path or 'the source model'}` (layers 1–{k}), "
        "then its own final norm and `lm_head`: `AutoModelForCausalLM.from_pretrained` on this folder computes the "
        f"source model's readout of layer {k}. Written by `hf_cut.evaluation.save_truncated`.",
    ]
    if quality is not None:
        lines += [
            "",
            f"Measured on {quality['num_tokens']} held-out completion tokens: loss {quality['loss'][k]:.4f}, token "
            f"accuracy {100 * quality['token_accuracy'][k]:.1f}% (the full {L}-layer model: {quality['loss'][L]:.4f}, "
            f"{100 * quality['token_accuracy'][L]:.1f}%).",
        ]
    with atomic_write(os.path.join(path, "README.md")) as f:
        f.write("\n".join(lines) + "\n")
    return str(path)
