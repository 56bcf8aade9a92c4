"""The SmolLM2 estimator table of docs/performance.md: each option's trained models, at γ = 0 and under noise.

Reads the runs' ``layer_losses.json`` (held-out layer losses, satisfaction, duals, train time) and a γ sweep of the
same models (``eval/ood_sweep.py``, its labels naming the options), and writes one row per label: mean ± std over
the label's training seeds (noise seeds averaged first).

    python bench/smollm2_quality.py --sweep bench/results/smollm2_estimators \\
        --runs "every layer, every step=outputs/smollm2/cut_s0,outputs/smollm2/cut_s1" ... --markdown docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from perf_report import mean_std, write_markdown  # noqa: E402

MARKS = ("<!-- quality-smollm2:start -->", "<!-- quality-smollm2:end -->")


def table(runs: dict[str, list[str]], sweep_dir: Path, gamma: float, command: str) -> str:
    records = json.loads((sweep_dir / "ood_sweep.json").read_text())["records"]
    lines = [
        f"Produced by `{command}`.",
        "",
        f"| options | seeds | token accuracy γ = 0 (%) | token accuracy γ = {gamma:g} (%) | ℓ_L | ℓ_15 | ℓ_25 "
        "| satisfied (%) | Σλ | train time (s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for label, dirs in runs.items():
        summaries = [json.loads((Path(d) / "layer_losses.json").read_text()) for d in dirs]
        mine = [r for r in records if r["model"] == label]
        by_model = defaultdict(lambda: defaultdict(list))  # model path (a training seed) → γ → noise seeds
        for r in mine:
            by_model[r["path"]][r["gamma"]].append(r["token_accuracy"])
        acc = {g: [statistics.fmean(v[g]) for v in by_model.values() if g in v] for g in (0.0, gamma)}
        losses = [s["layer_losses"] for s in summaries]
        lines.append(
            f"| {label} | {len(dirs)} | {mean_std(acc[0.0], 100, 1)} | {mean_std(acc[gamma], 100, 1)} "
            f"| {mean_std([l[-1] for l in losses], 1, 3)} | {mean_std([l[15] for l in losses], 1, 2)} "
            f"| {mean_std([l[25] for l in losses], 1, 2)} | {mean_std([s['constraint_satisfaction'] for s in summaries], 100, 1)} "
            f"| {mean_std([sum(s['dual_variables']) for s in summaries], 1, 2)} "
            f"| {mean_std([s['train_runtime'] for s in summaries], 1, 0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sweep", type=Path, required=True, help="output_dir of eval/ood_sweep.py over the runs")
    p.add_argument("--runs", nargs="+", required=True, metavar="LABEL=DIR,DIR", help="each option's run folders")
    p.add_argument("--gamma", type=float, default=1.5, help="the noise level of the second accuracy column")
    p.add_argument("--markdown", type=Path, help="rewrite this file's SmolLM2 quality block")
    args = p.parse_args(argv)
    runs = {}
    for item in args.runs:
        label, _, dirs = item.rpartition("=")
        if not label or not dirs:
            p.error(f"--runs {item!r}: expected LABEL=DIR[,DIR…]")
        runs[label] = dirs.split(",")
    import shlex

    command = "python bench/smollm2_quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = table(runs, args.sweep, args.gamma, command)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text, MARKS)
    return text


if __name__ == "__main__":
    main()
