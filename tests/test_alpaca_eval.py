"""Tests for hf_cut.evaluation.generation (decode, alpaca: offline, with the local judge and built-in prompts)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import logging
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from hf_cut.data import builtin_instruction_dataset, format_prompt, train_builtin_tokenizer
from hf_cut.evaluation.generation.alpaca import (
    BUILTIN_DATASET,
    judge_pairwise,
    load_alpaca_eval_instructions,
    write_model_outputs,
)
from hf_cut.evaluation.generation.decode import generate_completions
from hf_cut.evaluation.generation.local_annotator import (
    LOCAL_ANNOTATOR_DIR,
    exact_match,
    local_judge_verdict,
    make_exact_match_judge,
    make_f1_judge,
    make_local_judge,
    unigram_f1,
)
from hf_cut.models import tiny_llama_config
from tests.conftest import load_script, require

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
GEN = dict(max_new_tokens=8, progress=False)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: one intra-op thread is several times faster (and restored after)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_llama(tokenizer, seed: int):
    config = tiny_llama_config(
        vocab_size=len(tokenizer), hidden_size=64, num_layers=2, num_heads=4,
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    """A tiny Llama trained briefly on the built-in data, a random-init one, the shared tokenizer and saved copies."""
    data = builtin_instruction_dataset(num_train=960, num_test=40)["train"]
    texts = [p + c for p, c in zip(data["prompt"], data["completion"])]
    tokenizer = train_builtin_tokenizer(texts, vocab_size=256)
    model = _tiny_llama(tokenizer, seed=0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for step in range(120):
        start = (step * 16) % len(texts)
        batch = tokenizer([t + tokenizer.eos_token for t in texts[start : start + 16]], return_tensors="pt", padding=True)
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    reference = _tiny_llama(tokenizer, seed=1).eval()
    root = tmp_path_factory.mktemp("alpaca_models")
    paths = {}
    for name, m in (("trained", model), ("random", reference)):
        paths[name] = str(root / name)
        m.save_pretrained(paths[name])
        tokenizer.save_pretrained(paths[name])
    return model, reference, tokenizer, paths


@pytest.fixture(scope="module")
def instructions():
    return [row["instruction"] for row in load_alpaca_eval_instructions("builtin", limit=8)]


# --- Generation ---


def test_gamma0_equals_plain_greedy_generate(tiny_models, instructions):
    model, _, tokenizer, _ = tiny_models
    ours = generate_completions(model, tokenizer, instructions, gamma=0.0, batch_size=1, **GEN)
    plain = []
    for instruction in instructions:  # independent: format_prompt, no padding, no hook
        ids = tokenizer(format_prompt(instruction), return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        plain.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    assert ours == plain
    assert any(plain)  # the trained model says something
    # left-padded batches give the same greedy outputs
    assert generate_completions(model, tokenizer, instructions, gamma=0.0, batch_size=4, **GEN) == plain
    # without a chat template the prompt falls back to format_prompt (which the template reproduces)
    template, tokenizer.chat_template = tokenizer.chat_template, None
    try:
        assert generate_completions(model, tokenizer, instructions, gamma=0.0, batch_size=4, **GEN) == plain
    finally:
        tokenizer.chat_template = template


def test_same_seed_same_noise_and_noise_changes_outputs(tiny_models, instructions):
    model, _, tokenizer, _ = tiny_models
    clean = generate_completions(model, tokenizer, instructions, gamma=0.0, batch_size=4, **GEN)
    noisy = generate_completions(model, tokenizer, instructions, gamma=1.5, seed=3, batch_size=4, **GEN)
    again = generate_completions(model, tokenizer, instructions, gamma=1.5, seed=3, batch_size=4, **GEN)
    assert noisy == again
    assert noisy != clean


def test_noise_hook_removed_after_generation_even_on_error(tiny_models, instructions, monkeypatch):
    model, _, tokenizer, _ = tiny_models
    ids = tokenizer([format_prompt(instructions[0])], return_tensors="pt")
    embeddings = model.get_input_embeddings()
    with torch.no_grad():
        before = model(**ids).logits
    generate_completions(model, tokenizer, instructions[:2], gamma=2.0, **GEN)
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, before)
    assert not embeddings._forward_hooks and not model.base_model._forward_pre_hooks
    assert tokenizer.padding_side == "right"

    def broken_generate(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(model, "generate", broken_generate)
    with pytest.raises(RuntimeError, match="boom"):
        generate_completions(model, tokenizer, instructions[:2], gamma=2.0, **GEN)
    monkeypatch.undo()
    assert not embeddings._forward_hooks and not model.base_model._forward_pre_hooks
    assert tokenizer.padding_side == "right"
    with torch.no_grad():
        assert torch.equal(model(**ids).logits, before)


# --- Instructions and the output file ---


def test_training_prompts_are_used_as_they_are(tiny_models):
    """prompts=…: the exact text a model was fine-tuned on (the "### Input:" layout included), no chat template."""
    model, _, tokenizer, _ = tiny_models
    rows = load_alpaca_eval_instructions("builtin")
    rows = [r for r in rows if "### Input:" in r["prompt"]][:3] + rows[:3]
    test_prompts = set(builtin_instruction_dataset()["test"]["prompt"])
    assert all(r["prompt"] in test_prompts for r in rows)
    ours = generate_completions(model, tokenizer, [r["instruction"] for r in rows], prompts=[r["prompt"] for r in rows],
                                batch_size=4, **GEN)  # fmt: skip
    plain = []
    for row in rows:
        ids = tokenizer(row["prompt"], return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        plain.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True).strip())
    assert ours == plain
    with pytest.raises(ValueError, match="2 prompts for 6 instructions"):
        generate_completions(model, tokenizer, [r["instruction"] for r in rows], prompts=["a", "b"], **GEN)


def test_exact_match_judge_matches_hand_verdicts():
    assert exact_match(" Paris. ", "paris") and exact_match("two  words", "Two words")
    assert not exact_match("Paris, France", "Paris") and not exact_match("", "Paris")
    answers = {"Capital of France?": "Paris", "Add 2 and 3.": "5", "Reverse: a b": "b a"}
    pairs = [  # (instruction, output_1, output_2, verdict): only one right wins; both or neither right is a draw
        ("Capital of France?", "paris", "Lyon", 1.0),
        ("Add 2 and 3.", "6", "5.", 2.0),
        ("Reverse: a b", "a b", "ab", 1.5),
    ]
    require("alpaca_eval")
    from alpaca_eval.annotators import PairwiseAnnotator

    annotator = PairwiseAnnotator(annotators_config=str(LOCAL_ANNOTATOR_DIR),
                                  fn_completions=make_exact_match_judge(answers), caching_path=None)  # fmt: skip
    judged = annotator.annotate_pairs([dict(instruction=i, output_1=a, output_2=b) for i, a, b, _ in pairs])
    assert {a["instruction"]: a["preference"] for a in judged} == {i: v for i, _, _, v in pairs}
    # the model is output_2 → wins 1, loses 1, draws 1: (1 + 0.5) / 3
    model = [{"instruction": i, "output": b, "generator": "m"} for i, _, b, _ in pairs]
    reference = [{"instruction": i, "output": a, "generator": "r"} for i, a, _, _ in pairs]
    result = judge_pairwise(model, reference, annotators_config="local-exact", answers=answers)
    assert result["win_rate"] == pytest.approx(50.0) and result["annotator"] == "local-exact"
    assert (result["n_wins"], result["n_wins_base"], result["n_draws"]) == (1, 1, 1)
    with pytest.raises(ValueError, match="answers"):
        make_exact_match_judge({})


def test_f1_judge_gives_partial_credit_by_hand():
    """Token F1 against the reference answer, computed by hand; a draw only when the two F1 are equal."""
    answers = {"Name three colours.": "red green blue", "Capital of France?": "Paris", "Count: one two": "one two"}
    pairs = [  # (instruction, output_1, output_2, verdict)
        # F1("red green", ref) = 2·1·(2/3)/(1 + 2/3) = 0.8 > F1("red yellow", ref) = 2·0.5·(1/3)/(0.5 + 1/3) = 0.4
        ("Name three colours.", "red green", "red yellow", 1.0),
        # both wrong for exact match (a draw there), but "paris france" (F1 2/3) beats "lyon" (F1 0)
        ("Capital of France?", "Lyon", "Paris France", 2.0),
        ("Count: one two", "two one", "One, two.", 1.5),  # both F1 = 1: a draw
    ]
    require("alpaca_eval")
    model = [{"instruction": i, "output": b, "generator": "m"} for i, _, b, _ in pairs]
    reference = [{"instruction": i, "output": a, "generator": "r"} for i, a, _, _ in pairs]
    result = judge_pairwise(model, reference, annotators_config="local-f1", answers=answers)
    assert (result["n_wins"], result["n_wins_base"], result["n_draws"]) == (1, 1, 1)
    assert result["win_rate"] == pytest.approx(50.0) and result["annotator"] == "local-f1"
    exact = judge_pairwise(model, reference, annotators_config="local-exact", answers=answers)
    assert (exact["n_wins"], exact["n_wins_base"], exact["n_draws"]) == (0, 0, 3)  # exact match ties all three
    with pytest.raises(ValueError, match="token-F1"):
        make_f1_judge({})


def test_instructions_builtin_fallback_and_files(tmp_path, monkeypatch, caplog):
    import hf_cut.evaluation.generation.alpaca_data as alpaca_data

    def offline(filename):
        raise OSError("Hub unreachable")

    monkeypatch.setattr(alpaca_data, "_hub_json", offline)
    with caplog.at_level(logging.WARNING, logger="hf_cut.evaluation.generation.alpaca"):
        rows = load_alpaca_eval_instructions(limit=20)
    assert "built-in held-out prompts" in caplog.text
    assert len(rows) == 20 and {r["dataset"] for r in rows} == {BUILTIN_DATASET}
    everything = load_alpaca_eval_instructions("builtin")
    assert len({r["instruction"] for r in everything}) == len(everything)  # unique: alpaca-eval pairs by instruction
    assert not any("###" in r["instruction"] for r in everything)  # raw text, no prompt headers
    test_prompts = set(builtin_instruction_dataset()["test"]["prompt"])
    assert all(format_prompt(*r["instruction"].split("\n\n", 1)) in test_prompts for r in everything[:50])

    records = [{"instruction": "a", "dataset": "x", "output": "o", "generator": "g"}, {"instruction": "b"}]
    (tmp_path / "eval.json").write_text(json.dumps(records))
    (tmp_path / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    for name in ("eval.json", "eval.jsonl"):
        assert load_alpaca_eval_instructions(str(tmp_path / name)) == [
            {"instruction": "a", "dataset": "x"}, {"instruction": "b", "dataset": "eval"}
        ]
    assert len(load_alpaca_eval_instructions(str(tmp_path / "eval.json"), limit=1)) == 1


def test_output_file_has_alpaca_eval_format(tmp_path):
    rows = [{"instruction": "Say hi.", "dataset": "d1"}, {"instruction": "Add 1 and 2.", "dataset": "d2", "answer": "3"}]
    path = tmp_path / "sub" / "outputs.json"
    returned = write_model_outputs(rows, ["hi", "3"], "tiny", path)
    on_disk = json.loads(path.read_text())
    assert on_disk == returned == [
        {"instruction": "Say hi.", "output": "hi", "generator": "tiny", "dataset": "d1"},
        {"instruction": "Add 1 and 2.", "output": "3", "generator": "tiny", "dataset": "d2"},
    ]
    with pytest.raises(ValueError):
        write_model_outputs(rows, ["only one"], "tiny", path)
    alpaca_utils = require("alpaca_eval.utils")
    frame = alpaca_utils.load_or_convert_to_dataframe(path)
    assert list(frame.columns) == ["instruction", "output", "generator", "dataset"]


# --- The local judge ---

HAND_PAIRS = [
    # (instruction, output_1, output_2, verdict by hand)
    # answer "Paris": F1("The capital is Paris") = 2·(1/4)·1/(1/4+1) = 0.4 < F1("Paris, France") = 2·(1/2)·1/(3/2) = 2/3
    ("What is the capital of France?", "The capital is Paris", "Paris, France", 2.0),
    # no answer known: 2 words against none
    ("Say two words.", "two words", "", 1.0),
    # no answer known: 2 words each
    ("Name two animals.", "cat dog", "sun moon", 1.5),
]
ANSWERS = {"What is the capital of France?": "Paris"}


def test_local_judge_matches_hand_computation():
    assert unigram_f1("The capital is Paris", "Paris") == pytest.approx(0.4)
    assert unigram_f1("Paris, France", "Paris") == pytest.approx(2 / 3)
    assert unigram_f1("", "Paris") == 0.0
    for instruction, out_1, out_2, verdict in HAND_PAIRS:
        assert local_judge_verdict(out_1, out_2, ANSWERS.get(instruction)) == verdict
        assert local_judge_verdict(out_2, out_1, ANSWERS.get(instruction)) == 3 - verdict  # symmetric

    # the same verdicts through alpaca-eval's own annotator, loading the config from its directory path
    require("alpaca_eval")
    from alpaca_eval.annotators import PairwiseAnnotator

    annotator = PairwiseAnnotator(
        annotators_config=str(LOCAL_ANNOTATOR_DIR), fn_completions=make_local_judge(ANSWERS), caching_path=None
    )
    pairs = [dict(instruction=i, output_1=o1, output_2=o2) for i, o1, o2, _ in HAND_PAIRS]
    annotated = {a["instruction"]: a["preference"] for a in annotator.annotate_pairs(pairs)}
    assert annotated == {i: v for i, _, _, v in HAND_PAIRS}


def test_judge_pairwise_local_win_rate():
    require("alpaca_eval")
    model = [{"instruction": i, "output": o2, "generator": "model"} for i, _, o2, _ in HAND_PAIRS]
    reference = [{"instruction": i, "output": o1, "generator": "ref"} for i, o1, _, _ in HAND_PAIRS]
    reference.append({"instruction": "unused", "output": "x", "generator": "ref"})  # extra reference rows are dropped
    result = judge_pairwise(model, reference, annotators_config="local", answers=ANSWERS)
    # the model is output_2: wins pair 1, loses pair 2, draws pair 3 → (1 + 0 + 0.5) / 3
    assert result["win_rate"] == pytest.approx(50.0)
    assert (result["n_wins"], result["n_wins_base"], result["n_draws"], result["n_total"]) == (1, 1, 1, 3)
    assert result["annotator"] == "local"
    with pytest.raises(ValueError, match="no reference output"):
        judge_pairwise(model, reference[:1], annotators_config="local")


# --- End to end ---


def _load_cli():
    return load_script(ROOT / "eval" / "alpaca_eval.py", "alpaca_eval_cli")


def test_sweep_end_to_end_with_local_annotator(tiny_models, tmp_path):
    require("alpaca_eval")
    _, _, _, paths = tiny_models
    cli = _load_cli()
    out = tmp_path / "sweep"
    argv = ["--model", paths["trained"], "--reference", paths["random"], "--gammas", "0", "1.5",
            "--output_dir", str(out), "--limit", "6", "--annotators_config", "local", "--instructions", "builtin",
            "--max_new_tokens", "8", "--batch_size", "4"]
    summary = cli.main(cli.make_parser().parse_args(argv))

    written = json.loads((out / "alpaca_eval.json").read_text())
    assert [r["gamma"] for r in written["results"]] == [0.0, 1.5]
    for row in written["results"]:
        assert 0.0 <= row["win_rate"] <= 100.0 and row["n_total"] == 6
        assert "standard_error" in row
    assert written["results"] == summary["results"] and written["annotator"] == "local"
    assert (out / "win_rate.png").read_bytes()[:8] == PNG_MAGIC
    for gamma in ("0", "1.5"):
        for prefix, generator in (("outputs", "trained"), ("reference_outputs", "random")):
            rows = json.loads((out / f"{prefix}_gamma{gamma}.json").read_text())
            assert len(rows) == 6 and all(set(r) == {"instruction", "output", "generator", "dataset"} for r in rows)
            assert {r["generator"] for r in rows} == {generator}
        assert (out / f"judge_gamma{gamma}" / "annotations.json").exists()

    # against a fixed JSON of the model's own clean outputs: every pair is identical at γ = 0 → exactly 50%
    from hf_cut.evaluation.generation.alpaca import alpaca_eval_sweep

    again = alpaca_eval_sweep(paths["trained"], str(out / "outputs_gamma0.json"), [0.0], str(tmp_path / "self"),
                              limit=6, annotators_config="local", instructions="builtin", batch_size=4,
                              max_new_tokens=8)
    (result,) = again["results"]
    assert result["win_rate"] == 50.0 and result["n_draws"] == result["n_total"] == 6


def test_sweep_with_training_prompts_and_exact_match(tiny_models, tmp_path):
    require("alpaca_eval")
    from hf_cut.evaluation.generation.alpaca import alpaca_eval_sweep

    _, _, _, paths = tiny_models
    out = tmp_path / "exact"
    summary = alpaca_eval_sweep(paths["trained"], paths["random"], [0.0], str(out), limit=12,
                                annotators_config="local-exact", instructions="builtin", batch_size=4,
                                max_new_tokens=8, prompt_format="training")  # fmt: skip
    (result,) = summary["results"]
    rows = load_alpaca_eval_instructions("builtin", limit=12)
    answers = {r["instruction"]: r["answer"] for r in rows}
    model = json.loads((out / "outputs_gamma0.json").read_text())
    reference = json.loads((out / "reference_outputs_gamma0.json").read_text())
    right = [exact_match(r["output"], answers[r["instruction"]]) for r in model]
    ref_right = [exact_match(r["output"], answers[r["instruction"]]) for r in reference]
    assert result["exact_match"] == pytest.approx(100 * sum(right) / 12)
    assert result["reference_exact_match"] == pytest.approx(100 * sum(ref_right) / 12)
    wins = sum(a and not b for a, b in zip(right, ref_right))
    losses = sum(b and not a for a, b in zip(right, ref_right))
    assert result["win_rate"] == pytest.approx(100 * (wins + 0.5 * (12 - wins - losses)) / 12)
    assert summary["prompt_format"] == "training" and result["annotator"] == "local-exact"
    with pytest.raises(ValueError, match="prompt_format"):
        alpaca_eval_sweep(paths["trained"], None, [0.0], str(out), prompt_format="plain")


def test_generation_report_pools_training_seeds(tmp_path, capsys):
    def write(name, rows):
        (tmp_path / name).mkdir()
        (tmp_path / name / "alpaca_eval.json").write_text(json.dumps(
            {"model": name, "reference": "erm", "annotator": "local-exact", "num_instructions": 4, "results": rows}))

    write("cut_vs_erm_s0", [{"gamma": 0.0, "win_rate": 50.0, "exact_match": 40.0, "reference_exact_match": 40.0},
                            {"gamma": 1.5, "win_rate": 70.0, "exact_match": 20.0, "reference_exact_match": 10.0}])
    write("cut_vs_erm_s1", [{"gamma": 0.0, "win_rate": 60.0, "exact_match": 50.0, "reference_exact_match": 45.0},
                            {"gamma": 1.5, "win_rate": 80.0, "exact_match": 30.0, "reference_exact_match": 10.0}])
    (tmp_path / "notes").mkdir()  # ignored: no alpaca_eval.json
    cli = load_script(ROOT / "eval" / "generation_report.py")
    summary = cli.main(cli.make_parser().parse_args([str(tmp_path), "--output", str(tmp_path / "gen.json")]))
    (block,) = summary.values()
    zero, noisy = block["results"]
    assert list(summary) == ["cut_vs_erm"] and zero["num_seeds"] == 2 and len(block["runs"]) == 2
    assert zero["win_rate"] == {"mean": 55.0, "std": pytest.approx(7.0710678)}
    assert noisy["exact_match"]["mean"] == 25.0 and noisy["reference_exact_match"] == {"mean": 10.0, "std": 0.0}
    assert "| cut_vs_erm | 1.5 | 2 | 75.0 ± 7.1% | 25.0 ± 7.1% | 10.0 ± 0.0% |" in capsys.readouterr().out
    assert json.loads((tmp_path / "gen.json").read_text()) == summary
