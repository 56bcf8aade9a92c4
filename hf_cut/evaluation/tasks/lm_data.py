"""Causal-LM evaluation data as ``SFTTrainer`` feeds it to the model, without a trainer.

The rows are tokenised as TRL's SFT preparation does at its defaults (``max_length=1024``, ``truncation_mode=
"keep_start"``, ``completion_only_loss`` on prompt–completion data): the EOS token appended to non-conversational text
and completions, chat templates applied to conversational rows (ChatML or ShareGPT's ``from`` / ``value``), the
completion found where the tokenised prompt and prompt + completion diverge (TRL's ``common_prefix_length``), every
other position labelled -100, rows left without a label dropped; then padded on the right as TRL's collator does
(``input_ids``, ``attention_mask``, ``labels``). ``tests/test_evaluation.py`` checks the batches equal
``SFTTrainer``'s for the three formats the recipes use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import torch
from trl.data_utils import common_prefix_length, is_conversational, is_conversational_from_value, maybe_convert_to_chatml

__all__ = ["collate", "prepare_rows", "tokenize_row"]

MAX_LENGTH = 1024  # SFTConfig's default


def _ids(tokenizer, value, **template_kwargs) -> list[int]:
    if isinstance(value, list):  # conversational
        return list(tokenizer.apply_chat_template(value, tokenize=True, return_dict=True, **template_kwargs)["input_ids"])
    return list(tokenizer(text=value)["input_ids"])


def tokenize_row(row: dict, tokenizer) -> dict[str, list[int]]:
    """``input_ids`` and ``labels`` of one row (a ``prompt`` / ``completion``, ``messages``, ``conversations`` or
    ``text`` row, or one tokenised already: ``input_ids`` with ``labels``, ``completion_mask`` or
    ``assistant_masks``), before truncation."""
    if "input_ids" in row:  # tokenised already: TRL's labels, or built from its masks as TRL builds them
        ids = list(row["input_ids"])
        if "labels" in row:
            return {"input_ids": ids, "labels": list(row["labels"])}
        # completion_only_loss, at its default, holds for prompt–completion rows only (as TRL decides it)
        keys = ("completion_mask", "assistant_masks") if "prompt" in row and "completion" in row else ("assistant_masks",)
        masks = [row[key] for key in keys if key in row]
        return {"input_ids": ids, "labels": [t if all(bits) else -100 for t, *bits in zip(ids, *masks)]}
    if is_conversational_from_value(row):
        row = maybe_convert_to_chatml(dict(row))
    eos = tokenizer.eos_token
    tools = row.get("tools")
    template = {"tools": json.loads(tools) if isinstance(tools, str) else tools, **row.get("chat_template_kwargs", {})}
    if "prompt" in row:
        completion = row["completion"]
        if is_conversational(row):
            prompt_ids = _ids(tokenizer, row["prompt"], add_generation_prompt=True, **template)
            ids = _ids(tokenizer, row["prompt"] + completion, **template)
        else:
            completion = completion if completion.endswith(eos) else completion + eos
            prompt_ids, ids = _ids(tokenizer, row["prompt"]), _ids(tokenizer, row["prompt"] + completion)
        start = common_prefix_length(prompt_ids, ids)
        return {"input_ids": ids, "labels": [-100] * start + ids[start:]}
    if "messages" in row:
        ids = _ids(tokenizer, row["messages"], **template)
    elif "text" in row:
        ids = _ids(tokenizer, row["text"] if row["text"].endswith(eos) else row["text"] + eos)
    else:
        raise ValueError(f"A causal-LM evaluation row needs `prompt` and `completion`, `messages` or `text`; got "
                         f"{sorted(row)}.")  # fmt: skip
    return {"input_ids": ids, "labels": list(ids)}


def prepare_rows(dataset, tokenizer, max_length: int | None = MAX_LENGTH) -> list[dict[str, list[int]]]:
    """Every row tokenised (:func:`tokenize_row`), truncated to ``max_length`` (keeping the start), the rows left
    without a trained token dropped."""
    rows = []
    for row in dataset:
        item = tokenize_row(row, tokenizer)
        if max_length is not None:
            item = {key: value[:max_length] for key, value in item.items()}
        if any(label != -100 for label in item["labels"]):
            rows.append(item)
    return rows


def collate(rows: list[dict[str, list[int]]], pad_token_id: int, device=None) -> dict[str, torch.Tensor]:
    """A batch padded on the right: ``input_ids`` (with ``pad_token_id``), ``attention_mask``, ``labels`` (-100)."""
    width = max(len(row["input_ids"]) for row in rows)

    def padded(key: str, value: int) -> torch.Tensor:
        return torch.tensor([row[key] + [value] * (width - len(row[key])) for row in rows], device=device)

    mask = torch.tensor([[1] * len(row["input_ids"]) + [0] * (width - len(row["input_ids"])) for row in rows],
                        device=device)  # fmt: skip
    return {"input_ids": padded("input_ids", pad_token_id), "attention_mask": mask, "labels": padded("labels", -100)}


def batches(rows: list[dict[str, list[int]]], batch_size: int, pad_token_id: int, device=None) -> Iterator[dict]:
    for start in range(0, len(rows), batch_size):
        yield collate(rows[start : start + batch_size], pad_token_id, device)
