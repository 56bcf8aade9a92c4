"""γ sweep: agreement with the trainer and a naive computation, seeds, per-example statistics, files written."""

import json
import os

import pytest
import torch
import transformers

from hf_cut import ConstrainedSFTConfig, ConstrainedSFTTrainer
from hf_cut.data import builtin_instruction_dataset, train_builtin_tokenizer
from hf_cut.evaluation.report import comparison_table, load_sweep, write_sweep
from hf_cut.evaluation.tasks.stats import constraint_statistics, per_example_layer_losses
from hf_cut.evaluation.sweep import SweepResult, aggregate_records, ood_sweep
from tests.conftest import load_script, score_eval_set

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Two tiny Llamas (different seeds) saved with a tokenizer trained on the built-in data."""
    data = builtin_instruction_dataset(num_train=200, num_test=16)
    tokenizer = train_builtin_tokenizer(p + c for p, c in zip(data["train"]["prompt"], data["train"]["completion"]))
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        config = transformers.LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=3,
            num_attention_heads=4, num_key_value_heads=2, pad_token_id=tokenizer.pad_token_id,
            eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
        )  # fmt: skip
        path = tmp_path_factory.mktemp(f"model{seed}")
        transformers.AutoModelForCausalLM.from_config(config).save_pretrained(path)
        tokenizer.save_pretrained(path)
        paths.append(str(path))
    return paths, data["test"]


def test_layer_losses_equal_trainer_and_naive(saved_models, tmp_path):
    paths, test = saved_models
    model = transformers.AutoModelForCausalLM.from_pretrained(paths[0])
    tokenizer = transformers.AutoTokenizer.from_pretrained(paths[0])
    record = score_eval_set(model, tokenizer, test, gamma=0.0, seed=0, alpha=0.1, batch_size=len(test))
    # the trainer's own evaluation of the same set (one batch: batch mean = token mean)
    args = ConstrainedSFTConfig(output_dir=str(tmp_path), constrained=False, per_device_eval_batch_size=len(test),
                                report_to=[], use_cpu=True, bf16=False,
                                activation_checkpointing=False)  # fmt: skip
    trainer = ConstrainedSFTTrainer(model=model, args=args, train_dataset=test.select(range(1)), eval_dataset=test,
                                    processing_class=tokenizer)  # fmt: skip
    metrics = trainer.evaluate()
    for layer, value in enumerate(record["layer_losses"]):
        assert value == pytest.approx(metrics[f"eval_layer_loss/{layer}"], abs=1e-5)
    # naive: full logits of every layer, on the batch SFTTrainer feeds the model
    batch = next(iter(trainer.get_eval_dataloader()))
    with torch.no_grad():
        out = model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], output_hidden_states=True)
        labels = batch["labels"][:, 1:]
        hs = out.hidden_states
        naive_acc = None
        for layer, h in enumerate(hs):
            logits = model.lm_head(h if layer == len(hs) - 1 else model.model.norm(h))[:, :-1]
            nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100)
            assert record["layer_losses"][layer] == pytest.approx(nll.item(), abs=1e-5)
            mask = labels != -100
            naive_acc = ((logits.argmax(-1) == labels) & mask).sum().item() / mask.sum().item()
    assert record["token_accuracy"] == pytest.approx(naive_acc, abs=1e-9)
    assert record["loss"] == pytest.approx(nll.item(), abs=1e-5)  # the last layer's naive NLL (the loop's last)


def test_zero_noise_is_identical_across_seeds_and_noise_is_replayed(saved_models):
    paths, _ = saved_models
    result = ood_sweep(paths[:1], gammas=[0.0, 1.0], seeds=[0, 1, 0], limit=8, progress=False)
    by = {(r["gamma"], i): r for i, r in enumerate(result.records)}
    at_zero = [r for r in result.records if r["gamma"] == 0.0]
    assert at_zero[0]["layer_losses"] == at_zero[1]["layer_losses"] == at_zero[2]["layer_losses"]
    noisy = [r for r in result.records if r["gamma"] == 1.0]
    assert noisy[0]["layer_losses"] == noisy[2]["layer_losses"]  # seed 0 twice: the same draws
    assert noisy[0]["layer_losses"] != noisy[1]["layer_losses"]
    assert noisy[0]["loss"] != at_zero[0]["loss"]
    assert len(by) == 6


def test_per_example_losses_by_hand():
    # two layers (L = 1), three tokens: example 0 has tokens with log p = (−1, −3), example 1 has one token (−2)
    log_probs = torch.tensor([[-1.0, -3.0, -2.0], [-0.5, -1.5, -4.0]])
    positions = torch.tensor([[0, 2], [0, 3], [1, 1]])
    means, counts = per_example_layer_losses(log_probs, positions, num_examples=3)
    assert counts.tolist() == [2, 1, 0]
    assert torch.allclose(means[:2], torch.tensor([[2.0, 1.0], [2.0, 4.0]], dtype=torch.float64))
    assert torch.isnan(means[2]).all()


def test_constraint_statistics_by_hand():
    losses = torch.tensor(
        [
            [4.0, 3.0, 2.0],  # ratios 0.75, 0.667: both satisfied at α = 0.2
            [4.0, 3.5, 1.0],  # ratios 0.875 (not ≤ 0.8), 0.286
            [2.0, 2.0, 2.0],  # ratios 1, 1
            [float("nan"), 1.0, 1.0],  # no token: left out
        ]
    )
    stats = constraint_statistics(losses, alpha=0.2)
    assert stats["pair_satisfaction"] == pytest.approx(3 / 6)
    assert stats["example_satisfaction"] == pytest.approx(1 / 3)
    ratios = [0.75, 2 / 3, 0.875, 1 / 3.5, 1.0, 1.0]
    assert stats["descent_ratio_mean"] == pytest.approx(sum(ratios) / 6)
    assert stats["layer_satisfaction"] == pytest.approx([1 / 3, 2 / 3])


def _record(model, gamma, seed, acc):
    return {
        "model": model, "gamma": gamma, "seed": seed, "loss": 1.0 + gamma, "token_accuracy": acc,
        "pair_satisfaction": 0.5, "example_satisfaction": 0.25, "descent_ratio_mean": 0.9,
        "layer_losses": [3.0, 2.0, 1.0 + gamma], "num_tokens": 10,
    }  # fmt: skip


def test_aggregates_and_comparison_table_by_hand(tmp_path):
    records = [_record("cut", 0.0, 0, 0.6), _record("cut", 0.0, 1, 0.8), _record("ERM", 0.0, 0, 0.5)]
    records += [_record("ERM", 0.0, 1, 0.5), _record("cut", 1.0, 0, 0.4), _record("ERM", 1.0, 0, 0.3)]
    result = SweepResult(records=records, aggregates=aggregate_records(records), config={"alpha": 0.1})
    cut0 = next(a for a in result.aggregates if a["model"] == "cut" and a["gamma"] == 0.0)
    assert cut0["token_accuracy_mean"] == pytest.approx(0.7)
    assert cut0["token_accuracy_std"] == pytest.approx((2 * 0.1**2) ** 0.5)  # sample std of (0.6, 0.8)
    table = comparison_table(result)  # baseline: the model named ERM
    assert "| 0 | cut | 0.7000 ± 0.1414 | +0.2000 |" in table
    assert "| 1 | cut | 0.4000 ± 0.0000 | +0.1000 |" in table
    paths = write_sweep(result, str(tmp_path))
    data = json.loads((tmp_path / "ood_sweep.json").read_text())
    assert set(data) == {"config", "records", "aggregates"}
    assert {"model", "gamma", "seed", "loss", "token_accuracy", "layer_losses"} <= set(data["records"][0])
    assert load_sweep(str(tmp_path)).records == records
    csv_lines = (tmp_path / "ood_sweep.csv").read_text().splitlines()
    assert csv_lines[0].split(",")[:4] == ["model", "path", "gamma", "seed"] and len(csv_lines) == 7
    assert csv_lines[1].split(",")[-3:] == ["3.0", "2.0", "1.0"]
    for key in ("metric_plot", "layer_plot"):
        with open(paths[key], "rb") as f:
            assert f.read(8) == PNG_MAGIC


def test_bad_sweep_arguments(saved_models):
    with pytest.raises(ValueError, match="gammas"):
        ood_sweep(saved_models[0][:1], gammas=[-1.0], progress=False)
    with pytest.raises(ValueError, match="labels"):
        ood_sweep(saved_models[0], gammas=[0.0], labels=["only-one"], progress=False)


def test_training_seed_table_averages_noise_seeds_first():
    """Two models of one label, two noise seeds each: std over the models' own means, by hand."""
    from hf_cut.evaluation.report import training_seed_summary, training_seed_table
    from hf_cut.evaluation.sweep import SweepResult

    def rec(label, path, gamma, seed, acc):
        return {"model": label, "path": path, "gamma": gamma, "seed": seed, "token_accuracy": acc, "loss": 1.0,
                "layer_losses": [2.0, 1.0]}  # fmt: skip

    records = [rec("A", "a0", 0.0, 0, 0.50), rec("A", "a0", 0.0, 1, 0.70),   # model a0: 0.60
               rec("A", "a1", 0.0, 0, 0.80), rec("A", "a1", 0.0, 1, 0.80),   # model a1: 0.80
               rec("B", "b0", 0.0, 0, 0.30), rec("B", "b0", 1.0, 0, 0.10)]  # fmt: skip
    summary = training_seed_summary(SweepResult(records=records))
    row = summary["A"][0.0]
    assert row["num_models"] == 2 and row["token_accuracy_mean"] == pytest.approx(0.70)
    assert row["token_accuracy_std"] == pytest.approx(0.1414213562, rel=1e-6)  # stdev(0.6, 0.8) = 0.2/√2
    assert summary["B"][1.0]["token_accuracy_std"] == 0.0
    table = training_seed_table(SweepResult(records=records))
    assert "| 0 | 70.0 ± 14.1% | 30.0 ± 0.0% |" in table and "| 1 |  | 10.0 ± 0.0% |" in table
    by_model = training_seed_table(SweepResult(records=records), rows="models").splitlines()
    assert by_model[0] == "| setting | seeds | γ = 0 | γ = 1 |"
    assert by_model[2:] == ["| A | 2 | 70.0 ± 14.1% |  |", "| B | 1 | 30.0 ± 0.0% | 10.0 ± 0.0% |"]
    with pytest.raises(ValueError, match="rows"):
        training_seed_table(SweepResult(records=records), rows="labels")


def test_unknown_task_is_refused_with_the_names():
    from hf_cut.evaluation.tasks import TASK_NAMES, get_task

    assert [get_task(name).name for name in TASK_NAMES] == list(TASK_NAMES)
    with pytest.raises(ValueError, match="causal_lm"):
        get_task("translation")


def test_one_sweep_parser_for_every_task(tmp_path, capsys):
    """`eval/ood_sweep.py --task …` and the per-task commands share one parser: the same flags, each task's documented
    defaults, and another task's evaluation-set flags refused by name before anything loads."""
    from hf_cut.cli.sweep import parse_args

    (tmp_path / "config.json").write_text("{}")  # a folder holding a model (only its path is checked)
    model = str(tmp_path)
    common = ["--model", model, "--output_dir", str(tmp_path / "out")]
    assert (parse_args(common).seeds, parse_args(common).batch_size) == ([0], 64)
    denoise = parse_args(["--task", "denoising", *common, "--noise_mean", "0.5"])
    assert (denoise.seeds, denoise.batch_size, denoise.noise_mean) == ([0, 1, 2], 256, 0.5)
    assert parse_args([*common, "--num_seeds", "3"], task="classification").seeds == [0, 1, 2]
    for argv, flag in ((["--split", "validation"], "--split"), (["--task", "classification", "--data_dir", "x"],
                       "--data_dir"), (["--task", "denoising", "--dataset", "imdb"], "--dataset")):  # fmt: skip
        with pytest.raises(SystemExit):
            parse_args([*common, *argv])
        assert flag in capsys.readouterr().err
    cls_cli = load_script(os.path.join(ROOT, "eval/ood_sweep_cls.py"), "ood_sweep_cls_cli")
    assert cls_cli.parse_args(common).task == "classification"


def test_one_noise_draw_is_selected_and_reaggregated():
    """The table of noise seed 1 alone holds each model's seed-1 value; an absent seed is refused by name."""
    from hf_cut.evaluation.report import select_noise_seeds, training_seed_table

    records = [_record("cut", 0.0, 0, 0.6), _record("cut", 0.0, 1, 0.8), _record("ERM", 0.0, 0, 0.5)]
    records += [_record("ERM", 0.0, 1, 0.3)]
    one = select_noise_seeds(SweepResult(records=records), [1])
    assert [(r["model"], r["token_accuracy"]) for r in one.records] == [("cut", 0.8), ("ERM", 0.3)]
    rows = sorted(training_seed_table(one, rows="models").splitlines()[2:])
    assert rows == ["| ERM | 1 | 30.0 ± 0.0% |", "| cut | 1 | 80.0 ± 0.0% |"]
    both = training_seed_table(select_noise_seeds(SweepResult(records=records), [0, 1]), rows="models")
    assert "| cut | 1 | 70.0 ± 0.0% |" in both and "| ERM | 1 | 40.0 ± 0.0% |" in both
    with pytest.raises(ValueError, match=r"noise_seeds.*\[0, 1\]"):
        select_noise_seeds(SweepResult(records=records), [2])


def test_compare_measurements_matches_label_path_gamma_and_noise_seed():
    """By hand: the re-run differs by 0.05 at (γ 1, seed 0) and 0 elsewhere; another path or seed is not compared."""
    from hf_cut.evaluation.report import compare_measurements

    def rec(path, gamma, seed, acc):
        return {**_record("ERM", gamma, seed, acc), "path": path}

    committed = SweepResult(records=[rec("m0", 0.0, 0, 0.70), rec("m0", 1.0, 0, 0.40), rec("m0", 1.0, 1, 0.10)])
    rerun = SweepResult(records=[rec("m0", 0.0, 0, 0.70), rec("m0", 1.0, 0, 0.45), rec("m1", 0.0, 0, 0.70)])
    rows = compare_measurements(committed, rerun)
    assert rows[0]["path"] == "m0" and rows[0]["compared"] == 2
    assert rows[0]["max_abs_diff"] == pytest.approx(0.05)
    assert rows[1] == {"model": "ERM", "path": "m1", "compared": 0, "max_abs_diff": None}


def test_compare_sweeps_cli_prints_points(tmp_path, capsys):
    for name, acc in (("old", 0.40), ("new", 0.425)):
        records = [{**_record("ERM", 1.0, 0, acc), "path": "m0"}]
        (tmp_path / name).mkdir()
        sweep = {"config": {}, "records": records, "aggregates": []}
        (tmp_path / name / "ood_sweep.json").write_text(json.dumps(sweep))
    cli = load_script(os.path.join(ROOT, "eval/compare_sweeps.py"), "compare_cli")
    cli.main(cli.make_parser().parse_args([str(tmp_path / "old"), "--against", str(tmp_path / "new")]))
    assert capsys.readouterr().out.splitlines()[2] == "| ERM | m0 | 1 | 2.50 |"


def test_difference_table_by_hand(capsys):
    """A = (0.7, 0.5) and B = (0.4, 0.4) over two training seeds at γ 0: +20 points, spread √(0.1414² + 0) = 14.1,
    beyond it; at γ 1 (A 0.3 ± 0, B 0.25 ± 0.0707) +5 inside 7.1. An unknown label and a malformed pair are refused."""
    from hf_cut.evaluation.report import difference_table

    def rec(label, path, gamma, acc):
        return {"model": label, "path": path, "gamma": gamma, "seed": 0, "token_accuracy": acc, "loss": 1.0,
                "layer_losses": [2.0, 1.0]}  # fmt: skip

    records = [rec("A", "a0", 0.0, 0.7), rec("A", "a1", 0.0, 0.5), rec("B", "b0", 0.0, 0.4), rec("B", "b1", 0.0, 0.4)]
    records += [rec("A", "a0", 1.0, 0.3), rec("A", "a1", 1.0, 0.3), rec("B", "b0", 1.0, 0.2), rec("B", "b1", 1.0, 0.3)]
    records += [rec("A", "a0", 2.0, 0.1)]  # swept for A only: no column
    table = difference_table(SweepResult(records=records), [("A", "B")]).splitlines()
    assert table[0] == "| comparison | γ = 0 | γ = 1 |"
    assert table[2] == "| A − B | +20.0 (14.1)* | +5.0 (7.1) |"
    with pytest.raises(ValueError, match="'C'"):
        difference_table(SweepResult(records=records), [("A", "C")])
    cli = load_script(os.path.join(ROOT, "eval/report.py"), "report_cli")
    with pytest.raises(SystemExit):
        cli.make_parser().parse_args(["sweep", "--differences", "A against B"])
    assert "--differences" in capsys.readouterr().err
