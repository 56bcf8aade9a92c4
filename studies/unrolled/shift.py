"""Distribution shifts that are not more of the same noise, for the trained models of studies/unrolled/study.yaml:
salt-and-pepper noise on the input clips (a share p of the pixels set to 0 or 1), and another content — the built-in
moving *shapes* instead of digits — with the training corruption kept. RMSE of the last layer, mean ± std over training
seeds (each model once: the shifts are seeded), written to results/shift.json and printed as a table.

    python studies/unrolled/shift.py                         # every trained L = 10 model of the study
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHIFTS = [("salt-and-pepper p=0.05", 0.05), ("salt-and-pepper p=0.1", 0.1), ("salt-and-pepper p=0.2", 0.2)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=os.path.join(HERE, "results"))
    args = parser.parse_args(argv)

    from transformers import AutoModel

    from hf_cut.data.video import impulse_noise, load_video_dataset
    from hf_cut.evaluation.denoise_sweep import evaluate_denoiser
    from hf_cut.models.unrolled import UnrolledTransformerModel  # noqa: F401  (registers the model class)

    runs = json.load(open(os.path.join(args.results, "runs.json"), encoding="utf-8"))
    data = dict(frame_size=16, num_frames=8, noise_std=0.2, dataset_seed=0, num_train_examples=1, num_test_examples=500)
    digits = load_video_dataset("digits", **data)["test"]
    shapes = load_video_dataset("shapes", **data)["test"]
    sets = {"digits (in distribution)": digits, "moving shapes": shapes,
            **{name: impulse_noise(digits, p, seed=0) for name, p in SHIFTS}}  # fmt: skip
    per_model: dict[str, dict[str, list[float]]] = {}
    seeds: dict[str, list[int]] = {}  # the training seed of each value, in order
    for key, run in sorted(runs.items()):
        if run.get("num_layers") != 10 or not os.path.isdir(run["path"]):
            continue
        model = AutoModel.from_pretrained(run["path"]).eval()
        seeds.setdefault(run["label"], []).append(run["seed"])
        for name, dataset in sets.items():
            rmse = evaluate_denoiser(model, dataset, gamma=0.0, seed=0)["rmse"]
            per_model.setdefault(run["label"], {}).setdefault(name, []).append(rmse)
        print(key, {n: round(v[-1], 5) for n, v in per_model[run["label"]].items()}, flush=True)
    # mean ± std over training seeds, and each seed's value (so that every table can be recomputed from this file)
    table = {label: {name: {"mean": statistics.fmean(v), "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n": len(v),
                            "per_seed": dict(zip(map(str, seeds[label]), v))}
                     for name, v in by_set.items()} for label, by_set in per_model.items()}  # fmt: skip
    with open(os.path.join(args.results, "shift.json"), "w", encoding="utf-8") as f:
        json.dump(table, f, indent=1)
    names = list(sets)
    print("| setting | seeds | " + " | ".join(names) + " |\n| --- | --- |" + " --- |" * len(names))
    for label in sorted(table):
        cells = [f"{1000 * table[label][n]['mean']:.2f} ± {1000 * table[label][n]['std']:.2f}" for n in names]
        print(f"| {label} | {table[label][names[0]]['n']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
