"""A small Llama configuration for the offline default recipe and for tests (random init, no download)."""

from __future__ import annotations

from typing import Any

from transformers import LlamaConfig

__all__ = ["tiny_llama_config"]


def tiny_llama_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 6,
    num_heads: int = 4,
    max_position_embeddings: int = 256,
    **kwargs: Any,
) -> LlamaConfig:
    """A Llama ``LlamaConfig`` of the given size.

    The MLP is 4× the width, attention uses grouped queries with ``num_heads // 2`` key/value heads (``num_heads``
    when that is odd, so that the groups divide evenly), and the word embeddings and ``lm_head`` are untied, as in Llama 3.1 8B. ``kwargs`` go to ``LlamaConfig`` and
    override these choices: pass ``pad_token_id``, ``bos_token_id`` and ``eos_token_id`` of the tokenizer here.
    """
    for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                        ("num_heads", num_heads), ("max_position_embeddings", max_position_embeddings)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if hidden_size % num_heads:
        raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_heads` ({num_heads}).")
    values: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads // 2 if num_heads % 2 == 0 else num_heads,
        max_position_embeddings=max_position_embeddings,
        tie_word_embeddings=False,
    )
    values.update(kwargs)
    return LlamaConfig(**values)
