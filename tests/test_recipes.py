"""Tests for the recipes (every shipped YAML parses, the default one runs end to end) and hf_cut.evaluation.plots."""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_cut.evaluation import layer_loss_table, layer_losses_from_metrics, plot_layer_losses
from hf_cut.evaluation.plots import RATIO_HEADER
from hf_cut.models import tiny_llama_config
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "recipes" / "llama_sft.py"
YAMLS = sorted((ROOT / "recipes").glob("*.yaml"))
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def recipe():
    return load_script(RECIPE)


def parse_table(table: str) -> tuple[list[str], list[list[str]]]:
    lines = table.splitlines()
    split = lambda line: [c.strip() for c in line.strip().strip("|").split("|")]  # noqa: E731
    return split(lines[0]), [split(line) for line in lines[2:]]


# --- Recipes: parsing ---


def test_recipes_exist():
    names = {p.name for p in YAMLS}
    assert {"llama_sft.yaml", "llama31_8b_alpaca.yaml"} <= names
    assert Path(load_script(RECIPE).DEFAULT_CONFIG) == ROOT / "recipes" / "llama_sft.yaml"


def script_for(config: Path) -> Path:
    """The recipe script a YAML belongs to: llama_*, smollm2_* → llama_sft.py, roberta_*, minilm_* → roberta_cls.py,
    unrolled_* → unrolled_denoise.py."""
    scripts = {"llama": "llama_sft.py", "smollm2": "llama_sft.py", "roberta": "roberta_cls.py",
               "minilm": "roberta_cls.py", "unrolled": "unrolled_denoise.py"}  # fmt: skip
    return ROOT / "recipes" / next(script for prefix, script in scripts.items() if config.name.startswith(prefix))


@pytest.mark.parametrize("path", YAMLS, ids=lambda p: p.name)
def test_yaml_parses_with_unknown_keys_rejected(path):
    import yaml

    parser = load_script(script_for(path)).make_parser()
    config = yaml.safe_load(path.read_text())
    known = {action.dest for action in parser._actions}
    assert not set(config) - known - {"env"}, f"unknown keys in {path.name}"
    # bf16 recipes are meant for a GPU; parse them on a CPU-only machine with bf16 switched off
    overrides = [] if torch.cuda.is_available() else ["--bf16", "false", "--use_cpu", "true"]
    parsed_args = parser.parse_args_and_config(["--config", str(path), *overrides])
    for key, value in config.items():
        if key in ("bf16", "use_cpu") and overrides:
            continue
        owner = next(a for a in parsed_args if hasattr(a, key))
        parsed = getattr(owner, key)
        parsed = getattr(parsed, "value", parsed)  # enums (eval_strategy, lr_scheduler_type …)
        if key == "report_to":  # "none" and "x" are parsed to [] and ["x"]
            value = [] if value == "none" else [value] if isinstance(value, str) else value
        assert parsed == value, f"{path.name}: {key} = {parsed!r}, expected {value!r}"


def test_unknown_yaml_key_is_an_error(recipe, tmp_path):
    config = tmp_path / "stale.yaml"
    config.write_text((ROOT / "recipes" / "llama_sft.yaml").read_text() + "max_seq_length: 128\n")
    with pytest.raises(ValueError, match="max_seq_length"):
        recipe.make_parser().parse_args_and_config(["--config", str(config)])


def test_default_recipe_values(recipe):
    script_args, training_args, model_args = recipe.make_parser().parse_args_and_config(
        ["--config", recipe.DEFAULT_CONFIG]
    )
    assert model_args.model_name_or_path is None and script_args.dataset_name == "builtin"
    assert training_args.use_cpu and not training_args.bf16 and not training_args.activation_checkpointing
    assert training_args.constrained and training_args.eval_strategy == "no"


# --- Recipes: the default runs end to end ---


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("llama_sft") / "out"
    cmd = [
        sys.executable, str(RECIPE), "--config", str(ROOT / "recipes" / "llama_sft.yaml"),
        "--max_steps", "3", "--num_train_examples", "64", "--num_test_examples", "32",
        "--logging_steps", "1", "--output_dir", str(out), "--sweep_gammas", "0", "1", "--sweep_seeds", "0",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, proc.stdout


def test_default_recipe_runs(default_run):
    out, stdout = default_run
    summary = json.loads((out / "layer_losses.json").read_text())
    L = summary["num_layers"]
    assert L == 6
    assert len(summary["layer_losses"]) == L + 1
    assert len(summary["dual_variables"]) == L
    assert summary["constrained"] is True and summary["descent_alpha"] == 0.1
    # every constraint option is in the summary, noise_gamma (the robustness lever) included
    from hf_cut.config import ConstraintArguments

    assert {f for f in ConstraintArguments.__dataclass_fields__} <= set(summary) and summary["noise_gamma"] == 0.0
    # constraint_satisfaction, descent_ratio_mean, eval_loss, eval_mean_token_accuracy: against the naive pass below
    assert summary["layer_losses"][-1] == pytest.approx(summary["eval_metrics"]["eval_layer_loss/6"])
    assert summary["global_step"] == 3
    assert (out / "layer_losses.png").read_bytes()[:8] == PNG_MAGIC
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    assert RATIO_HEADER in stdout
    header, rows = parse_table(stdout[stdout.index("| layer") :].split("\n\n")[0].split("\neval_loss")[0])
    assert [r[0] for r in rows] == [str(l) for l in range(L + 1)]


def test_default_recipe_layer_losses_against_full_logits(default_run):
    """The held-out layer losses the recipe reports, recomputed from the saved model by a naive pass: the held-out
    examples tokenised by TRL itself, every layer's full logits (final norm, then the head; the last state as the
    model returns it), the mean NLL over the completion tokens of all examples."""
    import transformers
    from trl import SFTConfig, SFTTrainer

    from hf_cut.data import builtin_instruction_dataset

    out, _ = default_run
    summary = json.loads((out / "layer_losses.json").read_text())
    model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(out)
    test = builtin_instruction_dataset(seed=0)["test"].select(range(32))
    args = SFTConfig(output_dir=str(out / "naive"), max_length=128, use_cpu=True, bf16=False, report_to=[],
                     activation_checkpointing=False)
    rows = SFTTrainer(model=model, args=args, train_dataset=test, processing_class=tokenizer).train_dataset
    sums, count, correct = torch.zeros(7, dtype=torch.float64), 0, 0
    with torch.no_grad():
        for row in rows:
            ids = torch.tensor([row["input_ids"]])
            target = torch.tensor(row["labels"][1:]) != -100  # TRL's labels: -100 on the prompt
            states = model(input_ids=ids, output_hidden_states=True).hidden_states
            for l, h in enumerate(states):
                h = h if l == len(states) - 1 else model.model.norm(h)
                logp = torch.log_softmax(model.lm_head(h[0, :-1]).double(), -1)
                sums[l] -= logp.gather(-1, ids[0, 1:, None])[:, 0][target].sum()
            correct += int((logp.argmax(-1) == ids[0, 1:])[target].sum())  # the last layer's top-1
            count += int(target.sum())
    assert count > 0
    ell = (sums / count).tolist()
    assert summary["layer_losses"] == pytest.approx(ell, rel=1e-4)
    # the held-out scalars of the summary, by hand from the same pass (32 examples, one evaluation batch of 64: batch
    # means are means over all the completion tokens): the loss and top-1 accuracy of the last layer, the share of
    # the 6 constraints ℓ_l ≤ 0.9 ℓ_{l−1} met, the mean of the ratios ℓ_l / ℓ_{l−1}
    assert summary["eval_loss"] == pytest.approx(ell[6], rel=1e-4)
    assert summary["eval_mean_token_accuracy"] == pytest.approx(correct / count, abs=1e-6)
    slacks = [ell[l] - 0.9 * ell[l - 1] for l in range(1, 7)]
    assert min(abs(s) for s in slacks) > 1e-3 * max(ell)  # no constraint within the float32 noise of its bound
    assert summary["constraint_satisfaction"] == sum(s <= 0 for s in slacks) / 6
    assert summary["descent_ratio_mean"] == pytest.approx(sum(ell[l] / ell[l - 1] for l in range(1, 7)) / 6, rel=1e-4)


def test_recipe_sweep_at_gamma_zero_is_the_held_out_evaluation(default_run):
    """`--sweep_gammas 0 1`: the saved model swept on the held-out split; at γ = 0 its layer losses are the recipe's
    held-out ones (checked against full logits above), at γ = 1 the last layer's is higher."""
    out, _ = default_run
    summary = json.loads((out / "layer_losses.json").read_text())
    records = {r["gamma"]: r for r in json.loads((out / "ood_sweep.json").read_text())["records"]}
    assert set(records) == {0.0, 1.0} and records[0.0]["model"] == "constrained"
    assert records[0.0]["layer_losses"] == pytest.approx(summary["layer_losses"], rel=1e-5)
    assert records[1.0]["loss"] > records[0.0]["loss"]


def test_plot_cli_on_recipe_output(default_run, tmp_path, capsys):
    out, _ = default_run
    cli = load_script(ROOT / "eval" / "plot_layer_losses.py")
    png = tmp_path / "docs" / "cmp.png"
    cli.main(cli.make_parser().parse_args([str(out), str(out), "--labels", "a", "b", "--output", str(png)]))
    assert png.read_bytes()[:8] == PNG_MAGIC
    header, rows = parse_table(capsys.readouterr().out.split("\n📈")[0])
    assert header == ["layer", "a", "b"] and len(rows) == 7


def test_plot_cli_from_a_sweep(tmp_path, capsys):
    aggregates = [{"model": m, "gamma": g, "layer_losses_mean": [10.0 * (g + 1), v, 1.0]}
                  for m, v in (("pretrained", 20.0), ("ERM", 5.0)) for g in (0.0, 1.0)]  # fmt: skip
    (tmp_path / "ood_sweep.json").write_text(json.dumps({"records": [], "aggregates": aggregates}))
    cli = load_script(ROOT / "eval" / "plot_layer_losses.py")
    png = tmp_path / "fig.png"
    cli.main(cli.make_parser().parse_args(["--sweep", str(tmp_path), "--gamma", "1", "--models", "ERM", "--log",
                                           "--output", str(png)]))  # fmt: skip
    assert png.read_bytes()[:8] == PNG_MAGIC
    header, rows = parse_table(capsys.readouterr().out.split("\n📈")[0])
    assert header == ["layer", "ERM", RATIO_HEADER] and [float(r[1]) for r in rows] == [20.0, 5.0, 1.0]
    with pytest.raises(ValueError, match=r"^argument --keep: \['constrained'\] not in the sweep \(models: \['pretrained', "
                                         r"'ERM'\]\)\.$"):  # `hf-cut plot` refuses it in one line
        cli.main(cli.make_parser().parse_args(["--sweep", str(tmp_path), "--models", "constrained"]))


# --- hf_cut.evaluation.plots and hf_cut.models ---


def test_table_values_and_ratio():
    curve = [8.0, 4.0, 3.0, 2.7]
    header, rows = parse_table(layer_loss_table({"cut": curve}))
    assert header == ["layer", "cut", RATIO_HEADER]
    assert [float(r[1]) for r in rows] == curve
    assert rows[0][2] == ""
    assert [float(r[2]) for r in rows[1:]] == pytest.approx([0.5, 0.75, 0.9], abs=1e-4)


def test_table_several_labels_no_ratio():
    header, rows = parse_table(layer_loss_table({"cut": [2.5, 1.25, 1.0], "erm": [3.0, 2.0]}))
    assert header == ["layer", "cut", "erm"]
    assert [[float(c) if c else None for c in r[1:]] for r in rows] == [[2.5, 3.0], [1.25, 2.0], [1.0, None]]
    with pytest.raises(ValueError):
        layer_loss_table({})


def test_layer_losses_from_metrics():
    metrics = {"eval_layer_loss/10": 0.5, "eval_loss": 0.5, "eval_dual/1": 2.0, "layer_loss/0": 9.0}
    metrics |= {f"eval_layer_loss/{l}": 10.0 - l for l in range(10)}
    assert layer_losses_from_metrics(metrics) == [10.0 - l for l in range(10)] + [0.5]
    assert layer_losses_from_metrics(metrics, prefix="") == [9.0]
    with pytest.raises(KeyError):
        layer_losses_from_metrics({"eval_loss": 1.0})
    with pytest.raises(ValueError, match=r"\[1\]"):
        layer_losses_from_metrics({"eval_layer_loss/0": 1.0, "eval_layer_loss/2": 1.0})


def test_plot_writes_png(tmp_path):
    path = tmp_path / "sub" / "losses.png"
    returned = plot_layer_losses({"cut": [3.0, 2.0, 1.5], "erm": [3.0, 2.5, 1.4]}, str(path), title="t")
    assert returned == str(path)
    assert path.read_bytes()[:8] == PNG_MAGIC


def test_tiny_llama_config():
    config = tiny_llama_config(100, pad_token_id=2, bos_token_id=0, eos_token_id=1)
    assert (config.vocab_size, config.hidden_size, config.num_hidden_layers) == (100, 128, 6)
    assert (config.num_attention_heads, config.num_key_value_heads, config.intermediate_size) == (4, 2, 512)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (2, 0, 1)
    assert tiny_llama_config(50, hidden_size=48, num_heads=3).num_key_value_heads == 3
    with pytest.raises(ValueError, match="num_heads"):
        tiny_llama_config(50, hidden_size=30, num_heads=4)


def test_runs_table_by_hand(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "layer_losses.json").write_text(json.dumps({
        "layer_losses": [9.0, 4.0, 5.0, 2.0], "dual_variables": [0.0, 1.5, 0.5], "eval_mean_token_accuracy": 0.5,
        "constraint_satisfaction": 0.25, "descent_ratio_mean": 0.9, "train_runtime": 12.0}))  # fmt: skip
    cli = load_script(ROOT / "eval" / "runs_table.py")
    (row,) = cli.main(cli.parse_args([str(run), "--labels", "x", "--output", str(tmp_path / "rows.json")]))
    assert (row["descending_layers"], row["max_intermediate_loss"], row["dual_sum"], row["dual_max"]) == (2, 5.0, 2.0, 1.5)
    assert "| x | 2.000 | 50.0% | 4.0 | 5.0 | 2/3 | 25% | 2.00 | 1.50 | 12 s |" in capsys.readouterr().out
    other = tmp_path / "other"
    other.mkdir()
    (other / "layer_losses.json").write_text(json.dumps({"layer_losses": [3.0, 2.0, 1.0], "accuracy": 0.75,
                                                         "train_runtime": 5.0}))  # fmt: skip
    rows_json = str(tmp_path / "rows.json")
    cli.main(cli.parse_args([str(other), "--labels", "y", "--merge", rows_json, "--output", rows_json]))
    merged = json.loads((tmp_path / "rows.json").read_text())
    assert [r["label"] for r in merged] == ["x", "y"] and merged[0]["dual_sum"] == 2.0 and merged[1]["loss"] == 1.0
    cli.main(cli.parse_args([str(other), "--labels", "x", "--merge", rows_json, "--output", rows_json]))
    merged = json.loads((tmp_path / "rows.json").read_text())  # x summarised again: its row replaced in place
    assert [(r["label"], r["loss"]) for r in merged] == [("x", 1.0), ("y", 1.0)]
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "nothing")])


def test_plot_duals_reads_a_printed_log(tmp_path, capsys):
    log = tmp_path / "run.log"
    log.write_text("noise\n{'loss': '2.5', 'dual/1': '0.5', 'dual/2': '1.5', 'mean_token_accuracy': '0.25'}\n"
                   "{'loss': '2', 'dual/1': '0', 'dual/2': '0.25', 'dual/skipped_nonfinite': '0', "
                   "'mean_token_accuracy': '0.5'}\n{'train_runtime': '3'}\n")  # fmt: skip
    cli = load_script(ROOT / "eval" / "plot_duals.py")
    curves = cli.main(cli.parse_args([str(log), "--labels", "run", "--logging_steps", "5",
                                      "--output", str(tmp_path / "duals.png")]))  # fmt: skip
    assert curves["run"] == {"step": [5, 10], "dual_sum": [2.0, 0.25], "dual_max": [1.5, 0.25],
                             "mean_token_accuracy": [0.25, 0.5]}  # fmt: skip
    assert (tmp_path / "duals.png").read_bytes()[:8] == PNG_MAGIC
    assert json.loads((tmp_path / "duals.json").read_text()) == curves
