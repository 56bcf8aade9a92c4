"""What the cost controls do to the trained model: the built-in recipe under each estimator, over training seeds.

Runs ``recipes/llama_sft.py`` with its built-in default (``recipes/llama_sft.yaml``: a 6-layer Llama on hf-cut's
offline instruction data, 500 steps) once per (setting, seed), each in its own process, and tabulates the held-out
loss of the last layer and of the middle one, the token accuracy and the constraint satisfaction, mean ± std over
the seeds. A setting is ``erm`` or options joined by ``-``:

- ``k<K>``: ``layer_loss_interval`` K (default 1 here: every step);
- ``f<x>``: ``layer_loss_token_fraction`` x (default 1);
- ``d<x>``: ``dual_token_fraction`` x (the layers without grad; default: f);
- ``m<m>`` / ``r<m>``: ``layer_sample_size`` m, by weight / in rotation;
- ``b<B>``: ``layer_loss_budget`` B (the library default, 0.1: the trainer chooses m, f and d).

``--constraints hard`` keeps the recipe's hard constraints (λ grows to ~5), ``auto`` uses the library default
β = 1/L (λ stays ~0.01). Runs whose ``layer_losses.json`` exists are reused, so an interrupted table resumes.

    python bench/quality.py --constraints auto --settings k1 k16 f0.25 f0.0625 m1-f0.125-d0.03125 --seeds 0 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from perf_report import mean_std, write_markdown  # noqa: E402

MARKS = {"hard": ("<!-- quality:start -->", "<!-- quality:end -->"),
         "auto": ("<!-- quality-auto:start -->", "<!-- quality-auto:end -->")}  # fmt: skip
_OPTIONS = {
    "k": "--layer_loss_interval",
    "f": "--layer_loss_token_fraction",
    "d": "--dual_token_fraction",
    "m": "--layer_sample_size",
    "r": "--layer_sample_size",
    "b": "--layer_loss_budget",
}


def setting_flags(setting: str) -> list[str]:
    """A setting name -> the recipe's flags (``ValueError`` naming the setting for anything else)."""
    if setting == "erm":
        return ["--constrained", "false"]
    flags = {"--layer_loss_interval": "1"}
    try:
        for part in setting.split("-"):
            key, value = part[0], part[1:]
            if key not in _OPTIONS:
                raise ValueError
            if key in "kmr":
                if int(value) < 1:
                    raise ValueError
                value = str(int(value))
            elif not 0.0 < float(value) <= (float("inf") if key == "b" else 1.0):
                raise ValueError
            flags[_OPTIONS[key]] = value
            if key == "r":
                flags["--layer_sampling"] = "rotation"
    except (ValueError, IndexError):
        raise ValueError(
            f"setting {setting!r}: expected erm, or k<K>, f<x>, d<x>, m<m>, r<m>, b<B> joined by '-' (K, m integers "
            ">= 1; x in (0, 1]; B > 0)"
        ) from None
    return [item for pair in flags.items() for item in pair]


def run_recipe(setting: str, seed: int, output_dir: Path, extra: list[str], threads: int | None) -> dict:
    """One recipe run (reused when its ``layer_losses.json`` exists); returns that summary."""
    summary = output_dir / "layer_losses.json"
    if not summary.exists():
        cmd = [
            sys.executable, str(ROOT / "recipes" / "llama_sft.py"), "--config", str(ROOT / "recipes" / "llama_sft.yaml"),
            *setting_flags(setting), "--seed", str(seed), "--output_dir", str(output_dir), *extra,
        ]  # fmt: skip
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        output_dir.mkdir(parents=True, exist_ok=True)
        with open(output_dir / "run.log", "w", encoding="utf-8") as log:
            done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
        if done.returncode != 0:
            raise RuntimeError(
                f"{setting} seed {seed}: the recipe failed (exit {done.returncode}); see {output_dir}/run.log"
            )
    return json.loads(summary.read_text(encoding="utf-8"))


def markdown_table(command: str, results: dict[str, list[dict]]) -> str:
    """One row per setting: mean ± std over its runs (training seeds)."""
    any_run = next(iter(results.values()))[0]
    L = any_run["num_layers"]
    mid = L // 2
    lines = [
        f"Produced by `{command}`: held-out losses (every token at every layer) after {any_run['global_step']} steps, "
        f"α = {any_run['descent_alpha']}, dual lr {any_run['dual_lr']}; mean ± std over training seeds; satisfaction = "
        "share of the L constraints met by the held-out layer losses; Σλ = the final duals' sum.",
        "",
        f"| setting | flags | seeds | ℓ_{L} | ℓ_{mid} | token accuracy (%) | satisfied (%) | Σλ |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for setting, runs in results.items():
        duals = [sum(r["dual_variables"]) for r in runs] if runs[0]["constrained"] else None
        lines.append(
            f"| `{setting}` | {' '.join(setting_flags(setting))} | {len(runs)} "
            f"| {mean_std([r['layer_losses'][L] for r in runs])} | {mean_std([r['layer_losses'][mid] for r in runs])} "
            f"| {mean_std([r['eval_mean_token_accuracy'] for r in runs], 100, 1)} "
            f"| {mean_std([r['constraint_satisfaction'] for r in runs], 100, 0)} "
            f"| {mean_std(duals, 1, 2) if duals else '–'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, list[dict]]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=["k1", "k16", "f0.25", "f0.0625", "m1-f0.125-d0.03125", "erm"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    p.add_argument("--constraints", choices=sorted(MARKS), default="auto",
                   help="hard: the recipe's hard constraints; auto: β = 1/L, the library default")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    p.add_argument("--output_dir", type=Path, default=ROOT / "outputs" / "cost_quality")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--no-markdown", action="store_true", help="print the table only")
    p.add_argument("--existing", action="store_true", help="tabulate the runs already there, train none")
    p.add_argument("recipe_args", nargs=argparse.REMAINDER, help="after --: more flags for the recipe")
    args = p.parse_args(argv)
    for setting in args.settings:
        try:
            setting_flags(setting)
        except ValueError as err:
            p.error(f"--settings: {err}")
    extra = [a for a in args.recipe_args if a != "--"]
    if args.constraints == "auto":
        extra = ["--resilience_coef", "auto", *extra]
    threads = 1 if args.jobs > 1 else None
    if args.existing:
        results = {}
        for setting in args.settings:
            dirs = [args.output_dir / args.constraints / f"{setting}_s{seed}" for seed in args.seeds]
            runs = [json.loads((d / "layer_losses.json").read_text()) for d in dirs if (d / "layer_losses.json").exists()]
            if runs:
                results[setting] = runs
        if not results:
            p.error(f"--existing: no run of {args.settings} under {args.output_dir / args.constraints}")
        return _report(results, args, argv)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {
            (s, seed): pool.submit(
                run_recipe, s, seed, args.output_dir / args.constraints / f"{s}_s{seed}", extra, threads
            )
            for s in args.settings
            for seed in args.seeds
        }
        results = {s: [futures[(s, seed)].result() for seed in args.seeds] for s in args.settings}
    return _report(results, args, argv)


def _report(results: dict[str, list[dict]], args, argv) -> dict[str, list[dict]]:
    command = "python bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown_table(command.strip(), results)
    print(text)
    if not args.no_markdown:
        write_markdown(args.markdown, text, MARKS[args.constraints])
    return results


if __name__ == "__main__":
    main()
