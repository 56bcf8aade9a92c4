"""AlpacaEval's instructions and outputs: reading them (from the Hub's JSON files, local files, or hf-cut's built-in
held-out prompts offline) and writing a model's outputs in AlpacaEval's format."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...data import INPUT_HEADER, INSTRUCTION_HEADER, RESPONSE_HEADER, SECTION_SEP, builtin_instruction_dataset
from ...files import write_json

__all__ = [
    "ALPACA_EVAL_REPO",
    "BUILTIN_DATASET",
    "load_alpaca_eval_instructions",
    "load_alpaca_eval_reference_outputs",
    "read_outputs",
    "write_model_outputs",
]

logger = logging.getLogger("hf_cut.evaluation.generation.alpaca")

ALPACA_EVAL_REPO = "tatsu-lab/alpaca_eval"
ALPACA_EVAL_FILE = "alpaca_eval.json"  # the 805 instructions (with AlpacaEval 1's text-davinci-003 outputs)
ALPACA_EVAL_2_REFERENCE_FILE = "alpaca_eval_gpt4_baseline.json"  # AlpacaEval 2's reference outputs (GPT-4 Turbo)
BUILTIN_DATASET = "hf-cut-builtin"
OUTPUT_KEYS = ("instruction", "output", "generator", "dataset")


def read_outputs(path: str | os.PathLike) -> list[dict]:
    """Rows of a ``.json`` (a list of objects) or ``.jsonl`` file, e.g. AlpacaEval outputs."""
    path = Path(path)
    with open(path, encoding="utf-8") as f:
        if path.suffix == ".jsonl":
            return [json.loads(line) for line in f if line.strip()]
        rows = json.load(f)
    if not isinstance(rows, list):
        raise ValueError(f"{path}: expected a JSON list of objects, got {type(rows).__name__}")
    return rows


def _hub_json(filename: str) -> list[dict]:
    """One JSON file of the Hub dataset ``tatsu-lab/alpaca_eval``, read directly (no loading script)."""
    from huggingface_hub import hf_hub_download

    return read_outputs(hf_hub_download(repo_id=ALPACA_EVAL_REPO, filename=filename, repo_type="dataset"))


def _builtin_instructions() -> list[dict]:
    """The built-in held-out prompts as AlpacaEval rows; the input, if any, follows the instruction after a blank line."""
    rows, seen = [], set()
    for row in builtin_instruction_dataset()["test"]:
        body = row["prompt"].removeprefix(INSTRUCTION_HEADER).removesuffix(SECTION_SEP + RESPONSE_HEADER)
        instruction, _, input_text = body.partition(SECTION_SEP + INPUT_HEADER)
        text = f"{instruction}{SECTION_SEP}{input_text}" if input_text else instruction
        if text not in seen:  # alpaca-eval pairs outputs by instruction: keep them unique
            seen.add(text)
            rows.append(
                {"instruction": text, "dataset": BUILTIN_DATASET, "answer": row["completion"], "prompt": row["prompt"]}
            )
    return rows


def load_alpaca_eval_instructions(source: str | None = None, limit: int | None = None) -> list[dict]:
    """Evaluation instructions as rows with ``instruction`` and ``dataset``, in a fixed order.

    Args:
        source: ``None``: AlpacaEval's 805 instructions from the Hub (the JSON file itself, not the loading script);
            if that fails (offline), the built-in held-out prompts, with a warning. ``"builtin"``: those directly
            (their rows also carry the reference ``answer`` and the training ``prompt``). A path to a ``.json``/``.jsonl`` file in AlpacaEval's
            format (``dataset`` defaults to the file name).
        limit: keep the first N rows.
    """
    if source is None:
        try:
            rows = _hub_json(ALPACA_EVAL_FILE)
        except Exception as err:  # offline, no cache, or no huggingface_hub access
            logger.warning(
                "Could not load AlpacaEval's instructions from the Hub (%s: %s); using hf-cut's built-in held-out "
                "prompts instead (dataset %r).", type(err).__name__, err, BUILTIN_DATASET
            )
            rows = _builtin_instructions()
    elif source == "builtin":
        rows = _builtin_instructions()
    elif source.endswith((".json", ".jsonl")):
        rows = read_outputs(source)
        default_dataset = Path(source).stem
        rows = [{**row, "dataset": row.get("dataset") or default_dataset} for row in rows]
    else:
        raise ValueError(f"Unknown instruction source {source!r}: use None, 'builtin' or a .json/.jsonl file.")
    missing = [i for i, row in enumerate(rows) if not isinstance(row.get("instruction"), str)]
    if missing:
        raise ValueError(f"rows {missing[:5]} have no 'instruction' string")
    keep = ("instruction", "dataset", "answer", "prompt")
    rows = [{k: row[k] for k in keep if k in row} for row in rows]
    return rows[:limit] if limit is not None else rows


def load_alpaca_eval_reference_outputs(filename: str = ALPACA_EVAL_2_REFERENCE_FILE) -> list[dict]:
    """AlpacaEval's reference outputs from the Hub (default: AlpacaEval 2's GPT-4 Turbo baseline); needs the Hub."""
    return _hub_json(filename)


def write_model_outputs(
    rows: Sequence[Mapping[str, Any]], outputs: Sequence[str], generator: str, path: str | os.PathLike
) -> list[dict]:
    """Write ``outputs`` in AlpacaEval's format (``instruction``, ``output``, ``generator``, ``dataset``) as JSON."""
    if len(rows) != len(outputs):
        raise ValueError(f"{len(rows)} rows but {len(outputs)} outputs")
    records = [
        {"instruction": row["instruction"], "output": output, "generator": generator,
         "dataset": row.get("dataset", BUILTIN_DATASET)}
        for row, output in zip(rows, outputs)
    ]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, records, indent=2, ensure_ascii=False)
    return records
