"""The γ sweep's causal-LM batches, prepared without a trainer, are exactly what TRL's ``SFTTrainer`` feeds the model
for the formats the recipes use, and the sweep leaves no folder behind."""

from __future__ import annotations

import copy
import os
import tempfile

import pytest
import torch
from datasets import Dataset
from trl import SFTConfig, SFTTrainer

from hf_cut.evaluation.tasks.lm_data import batches, prepare_rows
from tests.conftest import make_rows, tiny_causal_lm
from tests.test_loss_options import CHAT_TEMPLATE

BATCH = 5


def formats(n: int = 13) -> dict[str, list[dict]]:
    rows = make_rows(n, seed=3)
    rows[4]["completion"] += "<eos>"  # already ends with EOS: not added twice
    user = [{"role": "user", "content": r["prompt"]} for r in rows]
    assistant = [{"role": "assistant", "content": r["completion"]} for r in rows]
    return {
        "prompt-completion": rows,
        "conversational prompt-completion": [{"prompt": [u], "completion": [a]} for u, a in zip(user, assistant)],
        "conversational (messages)": [{"messages": [u, a]} for u, a in zip(user, assistant)],
        "conversational (ShareGPT)": [{"conversations": [{"from": "human", "value": r["prompt"]},
                                                         {"from": "gpt", "value": r["completion"]}]} for r in rows],
        "plain text": [{"text": r["prompt"] + r["completion"]} for r in rows],
        "tokenised (assistant_masks)": [
            {"input_ids": list(range(3, 9 + i % 4)), "assistant_masks": [0, 0] + [1] * (4 + i % 4)} for i in range(n)
        ],
        "tokenised (labels)": [{"input_ids": list(range(3, 9 + i % 4)), "labels": [-100, 4] + list(range(5, 9 + i % 4))}
                               for i in range(n)],  # fmt: skip
    }  # fmt: skip


@pytest.mark.parametrize("name", list(formats()))
def test_batches_equal_what_sft_trainer_feeds_the_model(tmp_path, tokenizer, name):
    tok = copy.deepcopy(tokenizer)
    tok.chat_template = CHAT_TEMPLATE
    data = Dataset.from_list(formats()[name])
    trainer = SFTTrainer(
        model=tiny_causal_lm(vocab_size=len(tok), pad_token_id=tok.pad_token_id),
        args=SFTConfig(output_dir=str(tmp_path), per_device_eval_batch_size=BATCH, report_to=[], use_cpu=True,
                       bf16=False, activation_checkpointing=False),  # fmt: skip
        train_dataset=data,
        eval_dataset=data,
        processing_class=tok,
    )
    theirs = list(trainer.get_eval_dataloader())
    ours = list(batches(prepare_rows(data, tok), BATCH, tok.pad_token_id))
    assert len(ours) == len(theirs) == 3
    for a, b in zip(ours, theirs):
        assert set(a) == {key for key in b if key in ("input_ids", "attention_mask", "labels")}
        for key in a:
            assert torch.equal(a[key], b[key]), key
    trained = sum(int((b["labels"] != -100).sum()) for b in theirs)
    tokens = sum(int(b["attention_mask"].sum()) for b in theirs)
    masked = "prompt-completion" in name or name.startswith("tokenised")
    assert (0 < trained < tokens) if masked else trained == tokens  # the prompt masked only


def test_truncation_keeps_the_start_and_drops_rows_without_a_label(tokenizer):
    long_prompt = {"prompt": " ".join(["alpha"] * 30), "completion": " beta"}
    short = {"prompt": "alpha", "completion": " beta gamma"}
    rows = prepare_rows(Dataset.from_list([long_prompt, short]), tokenizer, max_length=8)
    ids = tokenizer("alpha beta gamma<eos>")["input_ids"]
    assert rows == [{"input_ids": ids, "labels": [-100] + ids[1:]}]  # the long row: its completion cut off


def test_a_sweep_leaves_no_folder_behind(tokenizer, monkeypatch, tmp_path):
    from hf_cut.evaluation import sweep

    path = tmp_path / "model"
    tiny_causal_lm(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id).save_pretrained(path)
    tokenizer.save_pretrained(path)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    result = sweep("causal_lm", [str(path)], gammas=[0.0, 1.0], limit=4, progress=False)
    assert len(result.records) == 2 and os.listdir(scratch) == []
