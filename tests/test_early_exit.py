"""Early exit: per-layer quality against full logits, truncated checkpoints, self-speculative decoding."""

import subprocess
import sys

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM

from hf_cut.evaluation import layers_kept_quality, save_truncated, speculative_decoding
from tests.conftest import tiny_causal_lm

ROWS = [{"prompt": f"question {i} about cats:", "completion": f" answer {i} is cats and dogs."} for i in range(12)]


def _model(tokenizer, num_layers=3, seed=0):
    return tiny_causal_lm(
        "llama", vocab_size=len(tokenizer), num_layers=num_layers, seed=seed,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
    )  # fmt: skip


def _naive_quality(model, tokenizer, rows):
    """Per layer: mean NLL and top-1 accuracy on the completion tokens, from full logits of every hidden state."""
    nll = torch.zeros(model.config.num_hidden_layers + 1, dtype=torch.float64)
    correct = torch.zeros_like(nll)
    tokens = 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            full = tokenizer(row["prompt"] + row["completion"], add_special_tokens=False)["input_ids"]
            full = full + [tokenizer.eos_token_id]  # TRL appends eos to the completion
            ids = torch.tensor([full])
            out = model(input_ids=ids, output_hidden_states=True)
            targets = ids[0, len(prompt) :]
            for layer, h in enumerate(out.hidden_states):
                if layer < len(out.hidden_states) - 1:
                    h = model.model.norm(h)
                logits = model.lm_head(h)[0, len(prompt) - 1 : -1]
                nll[layer] += torch.nn.functional.cross_entropy(logits, targets, reduction="sum").double()
                correct[layer] += (logits.argmax(-1) == targets).sum().double()
            tokens += targets.numel()
    return (nll / tokens).tolist(), (correct / tokens).tolist(), tokens


def test_layers_kept_quality_equals_full_logits_of_every_layer(tokenizer):
    model = _model(tokenizer)
    quality = layers_kept_quality(model, tokenizer, Dataset.from_list(ROWS), batch_size=5)
    loss, accuracy, tokens = _naive_quality(model, tokenizer, ROWS)
    assert quality["layers"] == [0, 1, 2, 3]
    assert quality["num_tokens"] == tokens
    assert quality["loss"] == pytest.approx(loss, abs=1e-4)
    assert quality["token_accuracy"] == pytest.approx(accuracy, abs=1e-9)


def test_truncated_checkpoint_loads_plainly_and_reproduces_the_readout_of_layer_k(tmp_path, tokenizer):
    model = _model(tokenizer, num_layers=4)
    quality = layers_kept_quality(model, tokenizer, Dataset.from_list(ROWS))
    path = save_truncated(model, 2, tmp_path / "k2", tokenizer, quality)
    small = AutoModelForCausalLM.from_pretrained(path)
    assert small.config.num_hidden_layers == 2 and len(small.model.layers) == 2
    ids = torch.tensor([tokenizer("question 3 about cats: answer")["input_ids"]])
    with torch.no_grad():
        expected = model.lm_head(model.model.norm(model(input_ids=ids, output_hidden_states=True).hidden_states[2]))
        assert torch.allclose(small(input_ids=ids).logits, expected, atol=1e-5)
    card = (tmp_path / "k2" / "README.md").read_text()
    assert "first 2 of the 4 decoder layers" in card
    assert f"{100 * quality['token_accuracy'][2]:.1f}%" in card
    with pytest.raises(ValueError, match="`k` must be in 1 … 4"):
        save_truncated(model, 5, tmp_path / "k5")


def test_speculative_decoding_accepts_every_draft_when_the_last_layer_is_the_identity(tokenizer):
    """With the last layer's output projections zeroed, h_L = h_{L−1}: the layer-(L−1) draft is the full model's
    greedy token, so every drafted token must be accepted (hand-derived rate 1)."""
    model = _model(tokenizer, num_layers=3)
    with torch.no_grad():
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    prompts = [row["prompt"] for row in ROWS[:3]]
    result = speculative_decoding(model, tokenizer, prompts, early_exit=2, max_new_tokens=6, progress=False)
    assert result["identical_outputs"]
    assert result["drafted_tokens"] > 0
    assert result["acceptance_rate"] == 1.0


def _wrong_draft_model(tokenizer):
    """A 3-layer Llama built by hand whose layer-1 draft is always wrong: token t embeds as the unit vector e_t and the
    head reads e_t back as token t; layers 0 and 2 add nothing (zero output projections), so the draft (layer 0 only)
    predicts the last token again. Layer 1's MLP adds 320·e_f(t) (gate 10·I, up I, down the map t → f(t): after the
    norm √32·e_t, silu(10·√32)·√32 ≈ 320), so the full model predicts f(t) = the next word token in a cycle, ≠ t."""
    model = _model(tokenizer, num_layers=3, seed=1)
    vocab, first_word = len(tokenizer), 3  # <unk> <pad> <eos>, then the words
    following = {t: first_word + (t - first_word + 1) % (vocab - first_word) if t >= first_word else first_word
                 for t in range(vocab)}  # fmt: skip
    assert model.config.hidden_size >= vocab and all(following[t] != t for t in range(vocab))
    eye = torch.eye(vocab, model.config.hidden_size)
    with torch.no_grad():
        model.model.embed_tokens.weight.copy_(eye)
        model.lm_head.weight.copy_(eye)
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
        mlp = model.model.layers[1].mlp
        mlp.gate_proj.weight.zero_()
        mlp.up_proj.weight.zero_()
        for t in range(vocab):
            mlp.gate_proj.weight[t, t], mlp.up_proj.weight[t, t] = 10.0, 1.0
            mlp.down_proj.weight[following[t], t] = 1.0
    return model, following


def test_speculative_decoding_output_is_greedy_decoding_with_a_poor_draft(tokenizer):
    """A draft that is never right (by construction, above): every drafted token is rejected, hand-derived rate 0, and
    the output is still the full model's greedy one, f(f(… f(last prompt token)))."""
    model, following = _wrong_draft_model(tokenizer)
    prompts = [row["prompt"] for row in ROWS[:3]]
    for prompt in prompts:  # the construction does what it says: the greedy continuation, by hand
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)["input_ids"]
        expected = [following[ids[0, -1].item()]]
        for _ in range(5):
            expected.append(following[expected[-1]])
        out = model.generate(ids, max_new_tokens=6, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        assert out[0, ids.shape[1] :].tolist() == expected
    result = speculative_decoding(model, tokenizer, prompts, early_exit=1, max_new_tokens=6, progress=False)
    assert result["identical_outputs"] and result["identical_prompts"] == 3
    assert result["drafted_tokens"] > 0 and result["accepted_tokens"] == 0
    assert result["acceptance_rate"] == 0.0
    with pytest.raises(ValueError, match="`early_exit` must be in 1 … 2"):
        speculative_decoding(model, tokenizer, prompts, early_exit=3)


def test_early_exit_cli_refuses_bad_arguments_before_loading(tmp_path):
    cmd = [sys.executable, "eval/early_exit.py", "--model", str(tmp_path / "missing"), "--output_dir", str(tmp_path)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--model" in done.stderr and "does not exist" in done.stderr
    (tmp_path / "config.json").write_text("{}")  # a folder holding a model: the next check is reached
    cmd[3:4] = [str(tmp_path)]
    done = subprocess.run(cmd + ["--early_exits", "0"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "--early_exits: every k must be >= 1" in done.stderr


def test_early_exit_cli_averages_models_that_share_a_label(tmp_path, tokenizer):
    from tests.conftest import load_script

    rows = [{"prompt": r["prompt"], "completion": r["completion"]} for r in ROWS]
    data = Dataset.from_list(rows)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    for split in ("train", "test"):  # a local folder of JSON lines, its splits named by the files
        data.to_json(str(data_dir / f"{split}.jsonl"))
    paths, expected = [], []
    for seed in (0, 1):
        model = _model(tokenizer, seed=seed)
        model.save_pretrained(tmp_path / f"m{seed}")
        tokenizer.save_pretrained(tmp_path / f"m{seed}")
        paths.append(str(tmp_path / f"m{seed}"))
        expected.append(layers_kept_quality(model, tokenizer, data)["token_accuracy"])
    cli = load_script("eval/early_exit.py")
    out = cli.main(cli.parse_args(["--model", *paths, "--labels", "tiny", "tiny", "--dataset", str(data_dir),
                                   "--limit", "12", "--output_dir", str(tmp_path / "out")]))  # fmt: skip
    kept = out["layers_kept"]["tiny"]
    assert kept["num_models"] == 2
    assert kept["token_accuracy"] == pytest.approx([(a + b) / 2 for a, b in zip(*expected)], abs=1e-9)
    assert (tmp_path / "out" / "early_exit.png").stat().st_size > 0
