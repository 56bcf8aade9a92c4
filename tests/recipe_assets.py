"""Stand-ins for the Hub assets the recipes name, written to local folders: a recipe is then run exactly as a user
runs it, with the model given by name (a local directory, as a Hub name would be) and the data as a local file."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

from tests.conftest import WORDS


def alpaca_rows(n: int = 96, seed: int = 0) -> list[dict]:
    """Rows in Alpaca's columns (instruction, input, output); about a third with an input."""
    rng = random.Random(seed)
    words = lambda k: " ".join(rng.choice(WORDS) for _ in range(k))  # noqa: E731
    return [{"instruction": f"Repeat: {words(rng.randint(2, 4))}", "input": words(2) if i % 3 == 0 else "",
             "output": words(rng.randint(2, 5))} for i in range(n)]  # fmt: skip


def write_alpaca_json(path: Path, n: int = 96) -> Path:
    path.write_text(json.dumps(alpaca_rows(n)))
    return path


def write_tiny_llama(folder: Path, num_layers: int = 4, hidden_size: int = 64, seed: int = 0) -> Path:
    """A random-init ``LlamaForCausalLM`` (untied head, grouped-query attention, as Llama 3.1) and a BPE tokenizer
    trained on the built-in data, saved with ``save_pretrained`` as a Hub checkpoint is laid out."""
    import torch
    import transformers

    from hf_cut.data import builtin_instruction_dataset, train_builtin_tokenizer
    from hf_cut.models import tiny_llama_config

    if (folder / "config.json").is_file():
        return folder
    train = builtin_instruction_dataset(seed=0)["train"].select(range(400))
    texts = [p + c for p, c in zip(train["prompt"], train["completion"])]
    texts += [" ".join(row.values()) for row in alpaca_rows()]
    tokenizer = train_builtin_tokenizer(texts, vocab_size=384)
    config = tiny_llama_config(len(tokenizer), hidden_size=hidden_size, num_layers=num_layers, num_heads=4,
                               max_position_embeddings=1024, pad_token_id=tokenizer.pad_token_id,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)  # fmt: skip
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_tiny_roberta(folder: Path, texts: list[str], num_labels: int = 2, seed: int = 0) -> Path:
    """A random-init ``RobertaForSequenceClassification`` (3 layers, width 32) and a WordPiece tokenizer trained on
    ``texts``, saved as a Hub checkpoint is laid out."""
    import torch
    import transformers

    from hf_cut.data.classification import train_wordpiece_tokenizer

    if (folder / "config.json").is_file():
        return folder
    tokenizer = train_wordpiece_tokenizer(texts, vocab_size=512)
    config = transformers.RobertaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                        num_hidden_layers=3, num_attention_heads=4, max_position_embeddings=520,
                                        num_labels=num_labels, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
    torch.manual_seed(seed)
    transformers.RobertaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def write_classification_splits(folder: Path, splits: dict[str, int], pairs: bool = False, seed: int = 0) -> Path:
    """A ``DatasetDict.save_to_disk`` folder in the Hub set's own columns: IMDb's (text, label) or MNLI's (premise,
    hypothesis, label in 0 … 2), with the built-in sentiment data's texts."""
    from datasets import Dataset, DatasetDict

    from hf_cut.data.classification import builtin_classification_dataset

    data = builtin_classification_dataset(num_train=max(splits.values()), num_test=8, seed=seed)["train"]
    parts = {}
    for split, n in splits.items():
        rows = data.select(range(n))
        if pairs:
            parts[split] = Dataset.from_dict({"premise": rows["text"], "hypothesis": rows["text"][::-1],
                                              "label": [i % 3 for i in range(n)]})  # fmt: skip
        else:
            parts[split] = Dataset.from_dict({"text": rows["text"], "label": rows["label"]})
    DatasetDict(parts).save_to_disk(str(folder))
    return folder


def write_frame_folders(root: Path, videos: dict[str, int], size: tuple[int, int] = (24, 36), seed: int = 0) -> Path:
    """Greyscale frame folders (``root/<video>/000.tif`` …), the layout UCSD Ped and ShanghaiTech ship."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for video, num_frames in videos.items():
        (root / video).mkdir(parents=True, exist_ok=True)
        for t in range(num_frames):
            Image.fromarray(rng.integers(0, 256, size=size, dtype=np.uint8)).save(root / video / f"{t:03d}.tif")
    return root
