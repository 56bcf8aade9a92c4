"""Batched generation under input-embedding noise, for instruction-following evaluations such as AlpacaEval.

Each instruction becomes one user turn rendered with the tokenizer's chat template (generation prompt added), or with
:func:`hf_cut.data.format_prompt` when the tokenizer has none. Prompts are left-padded and generated in batches with
an :class:`~hf_cut.noise.EmbeddingNoise` hook attached for the whole call, so every forward of ``generate`` (the
prompt and each cached step) sees perturbed embeddings. ``torch.manual_seed(seed)`` is set first: the same seed,
instructions, ``batch_size`` and model give the same noise draws and hence the same outputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from tqdm.auto import tqdm

from ...data import format_prompt
from ...noise import EmbeddingNoise

__all__ = ["generate_completions", "render_prompts"]


def render_prompts(tokenizer, instructions: Sequence[str]) -> list[str]:
    """The prompt text of each instruction: chat template (one user turn + generation prompt), else ``format_prompt``."""
    if getattr(tokenizer, "chat_template", None):
        return [
            tokenizer.apply_chat_template(
                [{"role": "user", "content": instruction}], tokenize=False, add_generation_prompt=True
            )
            for instruction in instructions
        ]
    return [format_prompt(instruction) for instruction in instructions]


def generate_completions(
    model,
    tokenizer,
    instructions: list[str],
    gamma: float = 0.0,
    noise_mean: float = 0.0,
    seed: int = 0,
    batch_size: int = 8,
    max_new_tokens: int = 256,
    do_sample: bool = False,
    progress: bool = True,
    prompts: list[str] | None = None,
) -> list[str]:
    """Generate one completion per instruction with the input embeddings perturbed at noise level ``gamma``.

    Args:
        model: a causal LM (``generate`` and ``get_input_embeddings``); it is put in eval mode.
        tokenizer: its tokenizer. Padding side and pad token are set for the call and restored afterwards (the eos
            token pads when there is no pad token).
        instructions: the user messages.
        gamma: γ, noise scale relative to the std of the clean embeddings (0 = clean).
        noise_mean: μ, mean of the noise.
        seed: ``torch.manual_seed`` set before the first batch (noise draws, and sampling when ``do_sample``).
        batch_size: prompts per ``generate`` call. The noise scale σ_x is measured per batch, so outputs at γ > 0
            depend on the batching; keep it fixed when comparing runs.
        max_new_tokens: generation length limit.
        do_sample: sample instead of greedy decoding.
        progress: show a tqdm progress bar.
        prompts: the full prompt text of each instruction, used as it is instead of rendering ``instructions`` (e.g.
            the exact prompts a model was fine-tuned on); tokenized with the tokenizer's default special tokens, as
            TRL tokenizes prompt/completion data.

    Returns:
        The decoded new tokens of each instruction (special tokens skipped, whitespace stripped), in input order.
    """
    if batch_size < 1:
        raise ValueError(f"`batch_size` must be >= 1, got {batch_size}.")
    instructions = list(instructions)
    if not instructions:
        return []
    if prompts is None:
        prompts = render_prompts(tokenizer, instructions)
        # A chat template renders its own special tokens (bos included); plain prompts get the tokenizer's defaults
        add_special_tokens = not getattr(tokenizer, "chat_template", None)
    else:
        prompts = list(prompts)
        if len(prompts) != len(instructions):
            raise ValueError(f"`prompts`: {len(prompts)} prompts for {len(instructions)} instructions.")
        add_special_tokens = True

    saved_padding_side, saved_pad_token = tokenizer.padding_side, tokenizer.pad_token
    noise = EmbeddingNoise(gamma, noise_mean)
    was_training = model.training
    model.eval()
    outputs: list[str] = []
    try:
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        noise.attach(model)
        torch.manual_seed(seed)
        device = next(model.parameters()).device
        starts = range(0, len(prompts), batch_size)
        with torch.inference_mode():
            for start in tqdm(starts, desc=f"generate (γ={gamma:g})", disable=not progress):
                batch = tokenizer(
                    prompts[start : start + batch_size],
                    return_tensors="pt",
                    padding=True,
                    add_special_tokens=add_special_tokens,
                ).to(device)
                generated = model.generate(
                    input_ids=batch["input_ids"],
                    attention_mask=batch["attention_mask"],
                    max_new_tokens=max_new_tokens,
                    do_sample=do_sample,
                    pad_token_id=tokenizer.pad_token_id,
                )
                new_tokens = generated[:, batch["input_ids"].shape[1] :]
                outputs += [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]
    finally:
        noise.remove()
        tokenizer.padding_side = saved_padding_side
        if saved_pad_token is None:
            tokenizer.pad_token = None
        model.train(was_training)
    return outputs
