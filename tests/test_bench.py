"""The performance benchmark (bench/benchmark.py): its statistics on hand numbers, and a --quick run end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "benchmark.py"


@pytest.fixture(scope="module")
def bench():
    return load_script(SCRIPT, "hf_cut_benchmark")


def test_median_and_paired_ratios_on_hand_numbers(bench):
    assert bench.median([3.0, 1.0, 2.0]) == 2.0
    assert bench.median([4.0, 1.0, 3.0, 2.0]) == 2.5
    with pytest.raises(ValueError):
        bench.median([])
    per_repeat = [
        {"sft": 2.0, "erm": 3.0, "constrained_f1": 5.0},
        {"sft": 4.0, "erm": 5.0, "constrained_f1": 12.0},
        {"sft": 1.0, "erm": 2.0},  # constrained_f1 failed in this repeat
    ]
    ratios = bench.paired_ratios(per_repeat)
    assert ratios["sft"] == [1.0, 1.0, 1.0]
    assert ratios["erm"] == [1.5, 1.25, 2.0]
    assert ratios["constrained_f1"] == [2.5, 3.0]
    assert bench.median(ratios["erm"]) == 1.5


def test_summarize_pairs_each_repeat_with_its_own_baseline(bench):
    def result(step, peak, before=100.0, slowest=None):
        times = [step, step] if slowest is None else [2 * step - slowest, slowest]  # mean `step`
        return {"ok": True, "mean_step_s": step, "peak_mem_mib": peak, "mem_before_train_mib": before,
                "grad_layers_per_step": [], "final_duals": None, "step_times_s": times}  # fmt: skip

    runs = [
        {"repeat": 0, "variant": "sft", "result": result(1.0, 200.0)},
        {"repeat": 0, "variant": "erm", "result": result(2.0, 300.0, slowest=3.5)},
        {"repeat": 1, "variant": "erm", "result": result(9.0, 300.0, slowest=12.0)},  # a slow repeat: the baseline is slow too
        {"repeat": 1, "variant": "sft", "result": result(3.0, 200.0)},
        {"repeat": 2, "variant": "sft", "result": result(2.0, 200.0)},
        {"repeat": 2, "variant": "erm", "result": {"ok": False, "error": "boom"}},
    ]
    summary = bench.summarize(runs, ["sft", "erm"])
    assert summary["sft"]["time_ratio"] == 1.0 and summary["sft"]["mem_ratio"] == 1.0
    assert summary["sft"]["mean_step_s"] == 2.0
    assert summary["erm"]["time_ratio"] == 2.5  # median of 2/1 and 9/3
    assert summary["erm"]["time_ratio_min"] == 2.0 and summary["erm"]["time_ratio_max"] == 3.0
    assert summary["erm"]["mem_ratio"] == 1.5
    assert summary["erm"]["train_mem_ratio"] == 2.0  # (300 − 100) / (200 − 100)
    assert summary["erm"]["runs"] == 2 and summary["erm"]["errors"] == ["boom"]
    # slowest step against the baseline's mean step in the same repeat: median of 3.5/1 and 12/3
    assert summary["erm"]["slowest_step_ratio"] == 3.75
    assert summary["sft"]["slowest_step_ratio"] == 1.0


def test_flop_model_matches_hand_arithmetic(bench):
    """The cpu shape (width 256, MLP 896, 4 layers, 4 heads / 1 key-value head, vocabulary 32,000, 256 positions,
    prompts of 16–32 tokens), worked by hand: per position a decoder layer costs 2·(2·256² + 2·256·64 + 3·256·896)
    + 2·257·256 = 1,835,520 FLOPs, a readout R = 2·256·32,000 = 16,384,000; 255 positions, 232 of them in the
    completion (255 − (48/2 − 1))."""
    R = 16_384_000
    body3 = 1_835_520 * 4 * 256 * 3  # forward + backward of the 4 layers over 256 positions
    body4 = 1_835_520 * 4 * 256 * 4  # + the recomputed forward (activation checkpointing)
    base3, base4 = body3 + 4 * R * 255, body4 + 4 * R * 255  # plain SFT on CPU scores every position
    ours = lambda body, extra: (body + 4 * R * 232 + extra)  # noqa: E731  ℓ_L on the completion, plus the layers
    # every layer on every token: layers 1–3 with grad (4 R each), layer 0 without (R): 13 R per completion token
    full = bench.flop_model(bench.SHAPES["cpu"], "constrained_k1", activation_checkpointing=False)
    assert full == pytest.approx(ours(body3, 13 * R * 232) / base3, rel=1e-12)
    assert full == pytest.approx(70_257_213_440 / 22_350_397_440, abs=1e-12)  # ≈ Llama 3.1 8B's +217%: the shape was chosen for it
    sixteenth = bench.flop_model(bench.SHAPES["cpu"], "constrained_f0.0625", activation_checkpointing=False)
    assert sixteenth == pytest.approx(ours(body3, 13 * R * 232 / 16) / base3, rel=1e-12)
    # every layer on every token, every 16th step: on average the FLOPs of 1/16 of the tokens at every step
    assert bench.flop_model(bench.SHAPES["cpu"], "constrained_k16", activation_checkpointing=False) == pytest.approx(
        sixteenth, rel=1e-12
    )
    assert bench.flop_model(bench.SHAPES["cpu"], "sft", activation_checkpointing=True) == 1.0
    # the default budget (0.1 of the trainer's plain step, 8·3,407,872 + 4 R = 92,798,976 per token): 0.5664 readouts,
    # so m = 1 layer with grad on 0.4248/4 = 0.1062 of the tokens and the 3 others on 0.5664/4/3 = 0.0472
    budget = bench.flop_model(bench.SHAPES["cpu"], "constrained_budget", activation_checkpointing=True)
    extra = R * 232 * (4 * 0.1062 + 3 * 0.0472)
    assert budget == pytest.approx(ours(body4, extra) / base4, rel=1e-9)
    # ERM measures nothing on unlogged steps and scores the completion only
    assert bench.flop_model(bench.SHAPES["cpu"], "erm", activation_checkpointing=True) == pytest.approx(
        ours(body4, 0) / base4, rel=1e-12
    )


def test_write_markdown_replaces_only_the_marked_block(bench, tmp_path):
    path = tmp_path / "perf.md"
    path.write_text(f"# Title\n\nintro\n\n{bench.MARK_START}\nold table\n{bench.MARK_END}\n\nafter\n")
    bench.write_markdown(path, "new table")
    text = path.read_text()
    assert "new table" in text and "old table" not in text
    assert text.startswith("# Title\n\nintro\n") and text.endswith("\n\nafter\n")


def test_quick_benchmark_end_to_end(tmp_path):
    output, markdown = tmp_path / "perf.json", tmp_path / "perf.md"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [
        sys.executable,
        str(SCRIPT),
        "--quick",
        "--shapes",
        "cpu",
        "--output",
        str(output),
        "--markdown",
        str(markdown),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]

    report = json.loads(output.read_text())
    summary = report["shapes"]["cpu"]["summary"]
    variants = report["settings"]["variants"]
    assert set(variants) >= {"sft", "erm", "constrained_k1", "constrained_k16", "constrained_f0.25"}
    assert set(summary) == set(variants)
    for name in variants:
        entry = summary[name]
        assert entry["ok"], (name, entry)
        assert entry["mean_step_s"] > 0 and entry["peak_mem_mib"] > 0
        assert entry["time_ratio"] > 0 and entry["mem_ratio"] > 0
    assert summary["sft"]["time_ratio"] == 1.0 and summary["sft"]["mem_ratio"] == 1.0
    # the constrained variants start with λ > 0: every intermediate layer (ℓ_1 … ℓ_{L−1}) trained through the readout
    layers = report["shapes"]["cpu"]["shape"]["layers"]
    for name in ("constrained_k1", "constrained_f0.25"):
        assert summary[name]["grad_layers_min"] == layers - 1
    assert summary["erm"]["grad_layers_max"] in (0, None)  # None: no measured step among the timed ones
    table = markdown.read_text()
    assert "benchmark.py --quick" in table and "| `constrained_f0.25` |" in table


def test_quality_settings_map_to_recipe_flags_and_a_table(tmp_path):
    quality = load_script(ROOT / "bench" / "quality.py")
    assert quality.setting_flags("k16") == ["--layer_loss_interval", "16"]
    assert quality.setting_flags("f0.25") == ["--layer_loss_interval", "1", "--layer_loss_token_fraction", "0.25"]
    assert quality.setting_flags("r2-f0.125-d0.03125") == [
        "--layer_loss_interval", "1", "--layer_sample_size", "2", "--layer_sampling", "rotation",
        "--layer_loss_token_fraction", "0.125", "--dual_token_fraction", "0.03125",
    ]  # fmt: skip
    assert quality.setting_flags("erm") == ["--constrained", "false"]
    for bad in ("k0", "f1.5", "f0", "x3", "kk", "m0", "f0.5-", ""):
        with pytest.raises(ValueError, match="setting"):
            quality.setting_flags(bad)
    run = {"num_layers": 2, "global_step": 500, "descent_alpha": 0.1, "dual_lr": 0.05, "constrained": True,
           "layer_losses": [3.0, 2.0, 1.5], "constraint_satisfaction": 0.5, "eval_mean_token_accuracy": 0.7,
           "dual_variables": [0.0, 1.25]}  # fmt: skip
    other = {**run, "layer_losses": [3.0, 2.2, 1.7], "eval_mean_token_accuracy": 0.6, "dual_variables": [0.25, 1.25]}
    table = quality.markdown_table("python bench/quality.py", {"k1": [run, other], "erm": [{**run, "constrained": False}]})
    # mean ± sample std over the two seeds, by hand: ℓ_2 1.6 ± 0.141, ℓ_1 2.1 ± 0.141, accuracy 65.0 ± 7.1, Σλ 1.375 ± 0.177
    assert "| `k1` | --layer_loss_interval 1 | 2 | 1.600 ± 0.141 | 2.100 ± 0.141 | 65.0 ± 7.1 | 50 ± 0 | 1.38 ± 0.18 |" in table
    assert "| `erm` | --constrained false | 1 | 1.500 | 2.000 | 70.0 | 50 | – |" in table



def test_gpu_check_dry_run_assembles_every_command_and_parses_its_configs(tmp_path):
    """`bench/gpu_check.sh --dry-run`: every GPU check's command, and the configs they name parsed by their own
    loaders (accelerate's for ZeRO-3 / FSDP2, the recipe's TrlParser, the benchmark's parser), with nothing run."""
    import json
    import os
    import subprocess

    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(["bash", "bench/gpu_check.sh", "--dry-run", str(tmp_path)], cwd=root, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {"bench_1b", "bench_8b_widths", "model_1b", "data", "qlora", "zero3", "zero3_resumed",
                           "fsdp2", "fsdp2_resumed"}  # fmt: skip
    assert all(c["returncode"] is None for c in checks.values()) and report["dry_run"] is True
    assert "--load_in_4bit" in checks["qlora"]["command"] and "accelerate_configs/zero3.yaml" in checks["zero3"]["command"]
    assert "checkpoint-10" in checks["fsdp2_resumed"]["command"]
    configs = report["configs"]
    assert configs["zero3"]["distributed_type"].endswith("DEEPSPEED") and configs["fsdp2"]["distributed_type"].endswith("FSDP")
    assert configs["recipe"]["load_in_4bit"] is True and configs["bench_gpu_1b"]["shapes"] == ["gpu_1b"]
    # the 8B recipe's own options, its default budget included
    assert "recipes/llama31_8b_alpaca.yaml" in checks["zero3"]["command"]
    assert configs["recipe"]["layer_loss_budget"] == 0.1 and configs["recipe"]["max_length"] == 1024
