"""What the cost controls do to the trained model: the built-in recipe at several settings.

Runs ``recipes/llama_sft.py`` with its built-in default (``recipes/llama_sft.yaml``: a 6-layer Llama on hf-cut's
offline instruction data, 500 steps) once per setting, each in its own process: every layer on every token at
every step (``k1``), every K-th step (``k4``, ``k8``, ``k16``: ``layer_loss_interval``), on a share of the tokens at
every step (``f0.25``…: ``layer_loss_token_fraction``), and plain ERM (``erm``: ``constrained=False``). It tabulates
the held-out loss of every layer, the constraint satisfaction and the token accuracy; the table goes into the
marked block of ``docs/performance.md`` and the curves into ``docs/cost_quality.png``.

    python bench/quality.py --settings k1 k4 k8 k16 f0.25 f0.0625 erm --jobs 2   # ~7 min on 2 cores

With ``--jobs`` > 1 the runs share the machine (one torch thread each); their speed is measured by
``bench/benchmark.py``, not here.
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

from perf_report import write_markdown  # noqa: E402

MARKS = ("<!-- quality:start -->", "<!-- quality:end -->")


def setting_flags(setting: str) -> list[str]:
    """``k<K>`` / ``f<fraction>`` / ``erm`` -> the recipe's flags (``ValueError`` for anything else)."""
    try:
        if setting == "erm":
            return ["--constrained", "false"]
        if setting.startswith("k") and int(setting[1:]) >= 1:
            return ["--layer_loss_interval", str(int(setting[1:])), "--layer_loss_token_fraction", "1.0"]
        if setting.startswith("f") and 0.0 < float(setting[1:]) <= 1.0:
            return ["--layer_loss_interval", "1", "--layer_loss_token_fraction", setting[1:]]
    except ValueError:
        pass
    raise ValueError(f"setting {setting!r}: expected erm, k<K> (an integer >= 1) or f<fraction> (in (0, 1])")


def run_recipe(setting: str, output_dir: Path, extra: list[str], threads: int | None) -> dict:
    """One recipe run; returns its ``layer_losses.json`` summary."""
    cmd = [
        sys.executable, str(ROOT / "recipes" / "llama_sft.py"), "--config", str(ROOT / "recipes" / "llama_sft.yaml"),
        *setting_flags(setting), "--output_dir", str(output_dir), *extra,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "run.log", "w", encoding="utf-8") as log:
        done = subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{setting}: the recipe failed (exit {done.returncode}); see {output_dir}/run.log")
    return json.loads((output_dir / "layer_losses.json").read_text(encoding="utf-8"))


def markdown_table(command: str, results: dict[str, dict]) -> str:
    any_run = next(iter(results.values()))
    L = any_run["num_layers"]
    lines = [
        f"Produced by `{command}`: held-out loss of every layer (400 examples, every token at every layer) after "
        f"{any_run['global_step']} steps, α = {any_run['descent_alpha']}, dual lr {any_run['dual_lr']}; satisfaction "
        "= share of the L constraints met by the held-out layer losses (batch means).",
        "",
        "| setting | " + " | ".join(f"ℓ_{l}" for l in range(L + 1)) + " | satisfied | token accuracy | final λ |",
        "| --- | " + " | ".join("---:" for _ in range(L + 1)) + " | ---: | ---: | --- |",
    ]
    for setting, r in results.items():
        losses = " | ".join(f"{x:.3f}" for x in r["layer_losses"])
        duals = ", ".join(f"{x:.2f}" for x in r["dual_variables"]) if r["constrained"] else "–"
        lines.append(
            f"| `{setting}` ({' '.join(setting_flags(setting))}) | {losses} "
            f"| {100 * r['constraint_satisfaction']:.1f}% | {100 * r['eval_mean_token_accuracy']:.1f}% | {duals} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, dict]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--settings", nargs="+", default=["k1", "k4", "k8", "k16", "f0.25", "f0.0625", "erm"])
    p.add_argument("--jobs", type=int, default=2, help="runs at a time (default 2)")
    p.add_argument("--output_dir", type=Path, default=ROOT / "outputs" / "cost_quality")
    p.add_argument("--markdown", type=Path, default=ROOT / "docs" / "performance.md")
    p.add_argument("--plot", type=Path, default=ROOT / "docs" / "cost_quality.png")
    p.add_argument("recipe_args", nargs=argparse.REMAINDER, help="after --: more flags for the recipe")
    args = p.parse_args(argv)
    for setting in args.settings:
        try:
            setting_flags(setting)
        except ValueError as err:
            p.error(f"--settings: {err}")
    extra = [a for a in args.recipe_args if a != "--"]
    threads = 1 if args.jobs > 1 else None
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        futures = {s: pool.submit(run_recipe, s, args.output_dir / s, extra, threads) for s in args.settings}
        results = {s: fut.result() for s, fut in futures.items()}
    command = "python bench/quality.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = markdown_table(command.strip(), results)
    print(text)
    if args.markdown:
        write_markdown(args.markdown, text, MARKS)
    if args.plot:
        from hf_cut.evaluation import plot_layer_losses

        curves = {setting: r["layer_losses"] for setting, r in results.items()}
        plot_layer_losses(curves, str(args.plot), title="Held-out loss per layer, by cost setting")
    return results


if __name__ == "__main__":
    main()
