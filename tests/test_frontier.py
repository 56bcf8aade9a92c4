"""The frontier tool against hand-built sweeps: points, spreads and verdicts computed by hand."""

import json
import math
import os

import pytest

from hf_cut.evaluation.frontier import beyond_frontier, frontier_points, frontier_report, pick_gammas
from hf_cut.evaluation.sweep import SweepResult
from tests.conftest import load_script

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _records(label, accuracies_by_seed, gammas=(0.0, 0.5, 1.0, 2.0)):
    """One model per training seed; each model's accuracy at γ is given for noise seeds 0 and 1."""
    out = []
    for seed, by_gamma in enumerate(accuracies_by_seed):
        for gamma, (a, b) in zip(gammas, by_gamma):
            for noise_seed, acc in ((0, a), (1, b)):
                out.append({"model": label, "path": f"{label}/s{seed}", "gamma": gamma, "seed": noise_seed,
                            "token_accuracy": acc, "loss": 1.0, "layer_losses": [2.0, 1.0]})  # fmt: skip
    return out


# accuracy at γ = 0, 0.5, 1, 2 for noise seeds (0, 1); two training seeds each
ERM = [[(0.80, 0.80), (0.78, 0.76), (0.40, 0.40), (0.10, 0.10)], [(0.82, 0.82), (0.80, 0.80), (0.44, 0.44), (0.10, 0.10)]]
ERM_NOISE = [[(0.70, 0.70), (0.66, 0.66), (0.60, 0.60), (0.30, 0.30)], [(0.70, 0.70), (0.66, 0.66), (0.60, 0.60),
             (0.30, 0.30)]]  # fmt: skip
CUT_WINS = [[(0.70, 0.70), (0.68, 0.68), (0.66, 0.66), (0.40, 0.40)], [(0.72, 0.72), (0.70, 0.70), (0.68, 0.68),
            (0.42, 0.42)]]  # fmt: skip
CUT_LOSES = [[(0.60, 0.60), (0.50, 0.50), (0.45, 0.45), (0.30, 0.30)], [(0.64, 0.64), (0.54, 0.54), (0.49, 0.49),
             (0.30, 0.30)]]  # fmt: skip


def _result():
    records = (_records("ERM γ=0", ERM) + _records("ERM γ=1", ERM_NOISE) + _records("constrained γ=1", CUT_WINS)
               + _records("constrained hard γ=1", CUT_LOSES))  # fmt: skip
    return SweepResult(records=records)


def test_points_are_means_over_training_seeds_of_noise_seed_means():
    points = {p["label"]: p for p in frontier_points(_result(), [1.0, 2.0])}
    erm = points["ERM γ=0"]
    assert erm["method"] == "ERM" and erm["num_seeds"] == 2
    assert erm["clean"]["mean"] == pytest.approx(0.81) and erm["clean"]["std"] == pytest.approx(math.sqrt(2) * 0.01)
    assert erm["1"]["mean"] == pytest.approx(0.42)
    assert points["constrained hard γ=1"]["method"] == "constrained"


def test_verdicts_by_hand():
    points = {p["label"]: p for p in frontier_points(_result(), [1.0, 2.0])}
    erm = [points["ERM γ=0"], points["ERM γ=1"]]
    wins, loses = points["constrained γ=1"], points["constrained hard γ=1"]
    # wins: clean 0.71 ± 0.014; ERM γ=1 is as accurate in distribution (0.70 ≥ 0.71 − 0.014) and at γ = 1 it has
    # 0.60 ± 0 against 0.67 ± 0.014: more by 0.07 > spread 0.014; ERM γ=0 (0.81 clean) is as accurate and has 0.42
    assert beyond_frontier(wins, erm, 1.0) is True
    # loses: ERM γ=1 dominates it (0.70 clean ≥ 0.62, 0.60 ≥ 0.47)
    assert beyond_frontier(loses, erm, 1.0) is False
    assert beyond_frontier(wins, [], 1.0) is None
    report = frontier_report(list(points.values()), 1.0, 2.0, baselines=("ERM",))
    assert report["beyond_every_baseline"] == {"γ=1": ["constrained γ=1"], "γ=2": ["constrained γ=1"]}


def test_spread_decides_a_close_call():
    """A 0.01 lead under noise is a win with no spread and not with a spread of 0.02 on the baseline."""
    base = {"label": "ERM", "method": "ERM", "clean": {"mean": 0.7, "std": 0.0}, "1": {"mean": 0.60, "std": 0.0}}
    point = {"label": "c", "method": "constrained", "clean": {"mean": 0.7, "std": 0.0}, "1": {"mean": 0.61, "std": 0.0}}
    assert beyond_frontier(point, [base], 1.0) is True
    noisy_base = {**base, "1": {"mean": 0.60, "std": 0.02}}
    assert beyond_frontier(point, [noisy_base], 1.0) is False


def test_lower_is_better_for_rmse():
    """RMSE: a point beyond the frontier is *lower* under noise by more than the spread, at a clean RMSE at most the
    spread above the baseline's; the same numbers read as an accuracy give the opposite verdict."""
    base = {"label": "ERM", "method": "ERM", "clean": {"mean": 0.062, "std": 0.0002}, "2": {"mean": 0.173, "std": 0.0002}}
    point = {"label": "c", "method": "constrained", "lower_is_better": True,
             "clean": {"mean": 0.0622, "std": 0.0001}, "2": {"mean": 0.168, "std": 0.0001}}  # fmt: skip
    # clean: 0.0622 − 0.062 = 0.0002 ≤ spread √(0.0002² + 0.0001²) = 0.000224: as good; under noise 0.005 lower
    assert beyond_frontier(point, [base], 2.0) is True
    assert beyond_frontier({**point, "2": {"mean": 0.1729, "std": 0.0001}}, [base], 2.0) is False  # 0.0001 < spread
    assert beyond_frontier({**point, "lower_is_better": False}, [base], 2.0) is False
    records = [{"model": "ERM γ=0", "path": f"s{i}", "gamma": g, "seed": 0, "rmse": r, "loss": 1.0,
                "layer_losses": [1.0]} for i, (g, r) in enumerate([(0.0, 0.06), (2.0, 0.17)])]  # fmt: skip
    records = [{**r, "path": "s0"} for r in records]
    (point_of_records,) = frontier_points(SweepResult(records=records), [2.0], metric="rmse")
    assert point_of_records["lower_is_better"] is True and point_of_records["2"]["mean"] == 0.17


def test_pick_gammas_from_the_baseline():
    points = frontier_points(_result(), [0.5, 1.0, 2.0])
    # ERM's best point at the largest γ is "ERM γ=1": 0.70 clean; keeps ≥ 0.63 at γ 0.5 (0.66) only, ≤ 0.35 at γ 2
    assert pick_gammas(points, "ERM", [0.5, 1.0, 2.0]) == (0.5, 2.0)
    # above a floor of 0.52 it has 0.18 at γ = 0, 0.14 at γ 0.5 (< 90%: none kept, the smallest γ) and 0.08 at γ 1
    # (≤ half): at the floor, 0.60 is no longer "kept more than half"
    assert pick_gammas(points, "ERM", [0.5, 1.0, 2.0], floor=0.52) == (0.5, 1.0)


def test_cli_writes_json_and_png(tmp_path):
    sweep_dir = tmp_path / "sweep"
    sweep_dir.mkdir()
    (sweep_dir / "ood_sweep.json").write_text(json.dumps({"config": {}, "records": _result().records,
                                                          "aggregates": []}))  # fmt: skip
    cli = load_script(os.path.join(ROOT, "eval/frontier.py"), "frontier_cli")
    cli.main(cli.parse_args([str(sweep_dir), "--output_dir", str(tmp_path / "out"), "--mild", "1", "--strong", "2"]))
    report = json.loads((tmp_path / "out" / "frontier.json").read_text())
    assert report["beyond_every_baseline"]["γ=1"] == ["constrained γ=1"]
    assert (tmp_path / "out" / "frontier.png").stat().st_size > 10_000
    table = (tmp_path / "out" / "frontier.md").read_text()
    # constrained γ=1: 0.71 ± 0.014 clean, 0.67 at γ = 1 (the two seeds: 0.66, 0.68), beyond ERM at both γ
    assert "| constrained γ=1 | 2 | 71.0 ± 1.4% | 67.0 ± 1.4% | 41.0 ± 1.4% | yes | yes |" in table
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "missing"), "--output_dir", str(tmp_path)])
    (tmp_path / "floor.json").write_text(json.dumps({"majority": 0.25, "positional": 0.3}))
    cli.main(cli.parse_args([str(sweep_dir), "--output_dir", str(tmp_path / "floor"), "--floor",
                             str(tmp_path / "floor.json")]))  # fmt: skip
    assert json.loads((tmp_path / "floor" / "frontier.json").read_text())["floor"] == 0.3
    assert "Input-free floor (a predictor that never reads its input): 30.0%." in (tmp_path / "floor" /
                                                                                   "frontier.md").read_text()
    with pytest.raises(SystemExit):
        cli.parse_args([str(sweep_dir), "--output_dir", str(tmp_path), "--floor", str(tmp_path / "none.json")])


def test_merge_sweeps_relabels_filters_and_reaggregates(tmp_path):
    for name, label, acc in (("a", "ERM", 0.5), ("b", "ERM", 0.7), ("c", "constrained", 0.6)):
        (tmp_path / name).mkdir()
        records = [{"model": label, "path": name, "gamma": g, "seed": 0, "token_accuracy": acc - g / 10, "loss": 1.0,
                    "layer_losses": [2.0, 1.0]} for g in (0.0, 1.0, 3.0)]  # fmt: skip
        (tmp_path / name / "ood_sweep.json").write_text(json.dumps({"config": {}, "records": records, "aggregates": []}))
    cli = load_script(os.path.join(ROOT, "eval/merge_sweeps.py"), "merge_cli")
    cli.main(cli.parse_args([str(tmp_path / "a"), str(tmp_path / "b"), "--relabel", "ERM=ERM γ=0", "--max_gamma",
                             "1", "--output_dir", str(tmp_path / "out")]))  # fmt: skip
    merged = json.loads((tmp_path / "out" / "ood_sweep.json").read_text())
    assert {r["model"] for r in merged["records"]} == {"ERM γ=0"} and len(merged["records"]) == 4
    at_one = next(a for a in merged["aggregates"] if a["gamma"] == 1.0)
    assert at_one["token_accuracy_mean"] == pytest.approx(0.5) and at_one["num_records"] == 2  # (0.4 + 0.6) / 2
    # merged again with one of its sources (a results file extended by new sweeps): each measurement once
    cli.main(cli.parse_args([str(tmp_path / "out"), str(tmp_path / "b"), "--relabel", "ERM=ERM γ=0",
                             "--output_dir", str(tmp_path / "again")]))  # fmt: skip
    again = json.loads((tmp_path / "again" / "ood_sweep.json").read_text())
    assert len(again["records"]) == 5  # a and b at γ = 0 and 1 (out and b hold b's twice), b at γ = 3 (from b)
    at_one = next(a for a in again["aggregates"] if a["gamma"] == 1.0)
    assert at_one["num_records"] == 2 and at_one["token_accuracy_mean"] == pytest.approx(0.5)
    with pytest.raises(SystemExit):
        cli.parse_args([str(tmp_path / "a"), "--relabel", "no-equals", "--output_dir", str(tmp_path)])
    # --keep, after the renaming: the ERM records of a alone; a label that matches nothing is an error
    cli.main(cli.parse_args([str(tmp_path / "a"), str(tmp_path / "c"), "--relabel", "ERM=ERM γ=0", "--keep",
                             "ERM γ=0", "--output_dir", str(tmp_path / "kept")]))  # fmt: skip
    kept = json.loads((tmp_path / "kept" / "ood_sweep.json").read_text())["records"]
    assert [(r["model"], r["path"], r["gamma"]) for r in kept] == [("ERM γ=0", "a", g) for g in (0.0, 1.0, 3.0)]
    with pytest.raises(ValueError, match="no record left"):  # `hf-cut merge` refuses it in one line
        cli.main(cli.parse_args([str(tmp_path / "a"), "--keep", "ERM γ=0", "--output_dir", str(tmp_path / "x")]))
