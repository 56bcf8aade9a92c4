"""Tests for hf_cut.data: built-in dataset, tokenizer, chat template and loaders (offline)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from hf_cut.data import (
    builtin_instruction_dataset,
    format_prompt,
    load_instruction_dataset,
    train_builtin_tokenizer,
)

PROMPT_RE = re.compile(r"\A### Instruction:\n(.*?)\n\n(?:### Input:\n(.*?)\n\n)?### Response:\n\Z", re.DOTALL)

# Hand-written expectations for the lookup tasks (a subset of each table).
EXPECTED_CAPITALS = {"France": "Paris", "Japan": "Tokyo", "Egypt": "Cairo", "Canada": "Ottawa", "Norway": "Oslo"}
EXPECTED_ANTONYMS = {"hot": "cold", "cold": "hot", "big": "small", "up": "down", "day": "night", "white": "black"}


@pytest.fixture(scope="module")
def ds():
    return builtin_instruction_dataset()


@pytest.fixture(scope="module")
def tok(ds):
    return train_builtin_tokenizer(p + c for p, c in zip(ds["train"]["prompt"], ds["train"]["completion"]))


def parse(prompt: str) -> tuple[str, str]:
    match = PROMPT_RE.match(prompt)
    assert match is not None, prompt
    return match.group(1), match.group(2) or ""


# --- prompt format ----------------------------------------------------------


def test_format_prompt_layout():
    assert format_prompt("Say hi.") == "### Instruction:\nSay hi.\n\n### Response:\n"
    assert format_prompt("Sum.", "1 2") == "### Instruction:\nSum.\n\n### Input:\n1 2\n\n### Response:\n"
    assert format_prompt("Say hi.", "   ") == format_prompt("Say hi.")


# --- built-in dataset -------------------------------------------------------


def test_shape_columns_and_balance(ds):
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == 4000 and ds["test"].num_rows == 400
    for split in ds.values():
        assert split.column_names == ["prompt", "completion", "task"]
        counts = Counter(split["task"])
        assert 5 <= len(counts) <= 7
        assert max(counts.values()) - min(counts.values()) <= 1
    small = builtin_instruction_dataset(num_train=70, num_test=14, seed=5)
    assert small["train"].num_rows == 70 and small["test"].num_rows == 14


def test_deterministic_and_seed_dependent(ds):
    again = builtin_instruction_dataset()
    assert ds["train"].to_list() == again["train"].to_list()
    assert ds["test"].to_list() == again["test"].to_list()
    other = builtin_instruction_dataset(seed=1)
    assert ds["train"]["prompt"] != other["train"]["prompt"]
    assert ds["test"]["prompt"] != other["test"]["prompt"]


@pytest.mark.parametrize("seed", [0, 7])
def test_test_split_is_held_out(seed):
    d = builtin_instruction_dataset(seed=seed)
    assert not set(d["test"]["prompt"]) & set(d["train"]["prompt"])
    # every lookup entry tested is still learnable from train under another phrasing
    train_answers = set(d["train"]["completion"])
    for row in d["test"]:
        if row["task"] in {"capital", "antonym", "next_letter"}:
            assert row["completion"] in train_answers


def test_answers_are_correct(ds):
    seen: Counter[str] = Counter()
    lookup: dict[tuple[str, str], set[str]] = {}
    for row in ds["train"].to_list() + ds["test"].to_list():
        instruction, inp = parse(row["prompt"])
        task, answer = row["task"], row["completion"]
        assert answer and answer == answer.strip() and "<|" not in answer
        if task == "add":
            a, b = map(int, re.findall(r"\d+", instruction))
            assert 0 <= a <= 99 and 0 <= b <= 99 and inp == ""
            assert answer == str(a + b)
        elif task == "reverse_words":
            words = inp.split(" ")
            assert 3 <= len(words) <= 5 and all(w.isalpha() for w in words)
            assert answer == " ".join(words[::-1])
        elif task == "sort_digits":
            assert inp.isdigit() and 3 <= len(inp) <= 6
            assert answer == "".join(sorted(inp))
        elif task == "count_words":
            assert answer == str(len(inp.split()))
        elif task == "next_letter":
            (letter,) = re.findall(r'"([a-z])"', instruction)
            assert answer == chr(ord(letter) + 1)
        elif task == "capital":
            (country,) = re.findall(r"capital(?: city)? of ([A-Z][a-z]+)", instruction)
            lookup.setdefault((task, country), set()).add(answer)
            if country in EXPECTED_CAPITALS:
                seen[task] += 1
                assert answer == EXPECTED_CAPITALS[country]
        elif task == "antonym":
            (word,) = re.findall(r'"([a-z]+)"', instruction)
            lookup.setdefault((task, word), set()).add(answer)
            if word in EXPECTED_ANTONYMS:
                seen[task] += 1
                assert answer == EXPECTED_ANTONYMS[word]
        else:
            pytest.fail(f"unexpected task {task!r}")
    assert seen["capital"] > 0 and seen["antonym"] > 0
    # lookup answers are consistent, and antonyms are symmetric
    assert all(len(v) == 1 for v in lookup.values())
    antonyms = {w: next(iter(a)) for (t, w), a in lookup.items() if t == "antonym"}
    for word, opposite in antonyms.items():
        if opposite in antonyms:
            assert antonyms[opposite] == word


# --- tokenizer --------------------------------------------------------------


def test_tokenizer_special_tokens(tok):
    assert tok.bos_token == "<|begin_of_text|>"
    assert tok.eos_token == "<|end_of_text|>"
    assert tok.pad_token == "<|pad|>"
    ids = {tok.bos_token_id, tok.eos_token_id, tok.pad_token_id}
    assert len(ids) == 3 and None not in ids
    for t in (tok.bos_token, tok.eos_token, tok.pad_token):
        assert tok(t)["input_ids"] == [tok.convert_tokens_to_ids(t)]
    assert tok.model_max_length == 512
    assert len(tok) <= 1024
    assert tok.bos_token_id not in tok("hello")["input_ids"]


@pytest.mark.parametrize(
    "text",
    [
        "What is 12 plus 7?",
        "### Instruction:\nReverse these words.\n\n### Input:\ncat dog sun\n\n### Response:\nsun dog cat",
        "  leading and trailing spaces  ",
        "naïve café – 東京 🙂 unseen bytes",
        "tabs\tand\nnewlines\r\n",
    ],
)
def test_tokenizer_round_trip(tok, text):
    ids = tok(text)["input_ids"]
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.decode(ids + [tok.eos_token_id], skip_special_tokens=True) == text


def test_digits_are_single_tokens(tok):
    tokens = tok.tokenize("2024 and 1234567890")
    digit_tokens = [t for t in tokens if any(ch.isdigit() for ch in t)]
    assert digit_tokens == list("20241234567890")


def test_completions_are_short(ds, tok):
    lengths = [len(tok(c)["input_ids"]) for c in ds["train"]["completion"]]
    assert 1 <= min(lengths) and max(lengths) <= 12


def test_chat_template(tok):
    user = {"role": "user", "content": "Add 3 and 4."}
    rendered = tok.apply_chat_template([user], tokenize=False, add_generation_prompt=True)
    assert rendered == format_prompt("Add 3 and 4.")
    no_gen = tok.apply_chat_template([user], tokenize=False, add_generation_prompt=False)
    assert rendered.startswith(no_gen) and not no_gen.endswith("### Response:\n")
    convo = [user, {"role": "assistant", "content": "7"}]
    full = tok.apply_chat_template(convo, tokenize=False)
    assert full == format_prompt("Add 3 and 4.") + "7" + tok.eos_token
    out = tok.apply_chat_template(convo, tokenize=True, return_dict=True, return_assistant_tokens_mask=True)
    answer_ids = [i for i, m in zip(out["input_ids"], out["assistant_masks"]) if m]
    assert tok.decode(answer_ids) == "7" + tok.eos_token


# --- loading ----------------------------------------------------------------


def test_load_builtin_matches_seed():
    assert load_instruction_dataset("builtin", seed=3)["test"].to_list() == (
        builtin_instruction_dataset(seed=3)["test"].to_list()
    )


def test_load_alpaca_json(tmp_path: Path):
    rows = [
        {"instruction": "Name a colour.", "input": "", "output": "Blue"},
        {"instruction": "Translate to French.", "input": "cat", "output": "chat"},
        {"instruction": "Give a number.", "input": "", "output": "42"},
    ]
    path = tmp_path / "alpaca.json"
    path.write_text(json.dumps(rows))
    kwargs = {"split_test_size": 0.3, "seed": 0, "cache_dir": str(tmp_path / "cache")}
    loaded = load_instruction_dataset(str(path), **kwargs)
    assert set(loaded) == {"train", "test"}
    assert loaded["train"].num_rows == 2 and loaded["test"].num_rows == 1
    assert loaded["train"].column_names == ["prompt", "completion"]
    got = {(r["prompt"], r["completion"]) for split in loaded.values() for r in split}
    assert got == {
        ("### Instruction:\nName a colour.\n\n### Response:\n", "Blue"),
        ("### Instruction:\nTranslate to French.\n\n### Input:\ncat\n\n### Response:\n", "chat"),
        ("### Instruction:\nGive a number.\n\n### Response:\n", "42"),
    }
    assert load_instruction_dataset(str(path), **kwargs)["test"].to_list() == loaded["test"].to_list()


def test_load_json_builder_keeps_prompt_completion_and_eval_split(tmp_path: Path):
    files = {}
    for split, n in (("train", 4), ("test", 2)):
        files[split] = str(tmp_path / f"{split}.jsonl")
        lines = [json.dumps({"prompt": f"p{i}", "completion": f"c{i}", "source": split}) for i in range(n)]
        Path(files[split]).write_text("\n".join(lines) + "\n")
    loaded = load_instruction_dataset("json", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert loaded["train"].num_rows == 4 and loaded["test"].num_rows == 2
    assert loaded["test"].to_list()[0] == {"prompt": "p0", "completion": "c0", "source": "test"}
    files["validation"] = files.pop("test")
    loaded = load_instruction_dataset("json", data_files=files, cache_dir=str(tmp_path / "cache"))
    assert set(loaded) == {"train", "test"} and loaded["test"]["source"] == ["test", "test"]


def test_unknown_columns_raise(tmp_path: Path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a"}) + "\n")
    with pytest.raises(ValueError, match="answer") as err:
        load_instruction_dataset(str(path), cache_dir=str(tmp_path / "cache"))
    assert "question" in str(err.value)
