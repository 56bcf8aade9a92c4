"""Step time and peak memory of ``hf_cut.ConstrainedSFTTrainer`` against plain ``trl.SFTTrainer``.

The same randomly initialised Llama is trained on the same synthetic batches by every variant; the variants run
interleaved (the order rotates from one repeat to the next), each in a fresh process of its own, ``--repeats`` times.
A run skips ``--warmup`` steps and times ``--steps`` optimizer steps (mean: with
``layer_loss_interval`` K one step in K measures the layers, so ``--steps`` should be a multiple of every K). The time ratio of a variant is the
median over the repeats of its run's mean step time over plain SFT's in the same repeat (paired, so slow drifts of
a shared machine cancel); the memory ratio is that of the peak memory (CPU: peak RSS of the run's process; GPU:
``torch.cuda.max_memory_allocated``).

    python bench/benchmark.py --shapes cpu gpu --repeats 5 --steps 16 --warmup 2   # bench/results/performance.json, docs/performance.md
    python bench/benchmark.py --quick --output /tmp/perf.json                     # smoke test, ~20-60 s

Shapes: ``cpu`` has the cost structure of Llama 3.1 8B (see ``flop_model``: the readout costs ~9 decoder layers and
the model has 4, so reading out every layer adds about what 31 readouts add to the 32-layer 8B); ``gpu`` has the 8B's
widths with 4 layers in bf16 and runs only where CUDA is available.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from perf_report import (  # noqa: E402, F401
    MARK_END,
    MARK_START,
    machine_info,
    markdown_report,
    median,
    paired_ratios,
    summarize,
    write_markdown,
)

BASELINE = "sft"

SHAPES: dict[str, dict[str, Any]] = {
    # Llama 3.1 8B proportions scaled down: FFN 3.5 × width, 4:1 grouped-query attention, untied head
    "cpu": dict(hidden=256, intermediate=896, layers=4, heads=4, kv_heads=1, vocab=32000, seq=256, batch=4,
                prompt_len=(16, 32), dtype="float32", device="cpu"),
    "gpu": dict(hidden=4096, intermediate=14336, layers=4, heads=32, kv_heads=8, vocab=128256, seq=1024, batch=4,
                prompt_len=(32, 128), dtype="bfloat16", device="cuda"),
    # SmolLM2-135M-Instruct's config (random weights: the cost does not depend on them), fp32 on CPU
    "smollm2": dict(hidden=576, intermediate=1536, layers=30, heads=9, kv_heads=3, vocab=49152, seq=128, batch=8,
                    prompt_len=(16, 32), dtype="float32", device="cpu", tied=True),
    # Llama 3.2 1B's widths and depth with an untied head: 1.5B parameters, bf16 (docs/scaling.md)
    "gpu_1b": dict(hidden=2048, intermediate=8192, layers=16, heads=32, kv_heads=8, vocab=128256, seq=1024, batch=4,
                   prompt_len=(32, 128), dtype="bfloat16", device="cuda"),
    # Llama 3.1 8B's widths, heads and vocabulary with 2 layers, 1,024 tokens, fp32 on CPU; a stateless optimizer (SGD)
    # so that weights and gradients (1.49B parameters, ~12 GB) fit in 24 GiB: the readout's memory at the real shapes
    "cpu_8b_widths": dict(hidden=4096, intermediate=14336, layers=2, heads=32, kv_heads=8, vocab=128256, seq=1024,
                          batch=1, prompt_len=(32, 128), dtype="float32", device="cpu", optim="sgd"),
}  # fmt: skip
QUICK_SHAPES: dict[str, dict[str, Any]] = {
    "cpu": dict(hidden=32, intermediate=64, layers=2, heads=4, kv_heads=2, vocab=512, seq=32, batch=2,
                prompt_len=(2, 4), dtype="float32", device="cpu"),
    "gpu": dict(hidden=64, intermediate=128, layers=2, heads=4, kv_heads=2, vocab=1024, seq=64, batch=2,
                prompt_len=(2, 8), dtype="bfloat16", device="cuda"),
}  # fmt: skip
QUICK_SHAPES["gpu_1b"] = QUICK_SHAPES["gpu"]


def _constrained(fraction: float = 1.0, interval: int = 1, dual_init: float = 1.0, **extra) -> dict[str, Any]:
    return {"constrained": True, "layer_loss_budget": None, "layer_loss_token_fraction": fraction,
            "layer_loss_interval": interval, "dual_init": dual_init, **extra}  # fmt: skip


# name -> (trainer, constraint options, description). The constrained variants start with every λ = 1 so that every
# intermediate layer is trained through the readout from the first step (λ = 0 would make the readout grad-free).
VARIANTS: dict[str, tuple[str, dict[str, Any], str]] = {
    "sft": ("sft", {}, "plain `trl.SFTTrainer`"),
    "erm": ("cut", {"constrained": False}, "`constrained=False` (default options): layers measured without grad"),
    "constrained_budget": ("cut", {"constrained": True, "dual_init": 1.0},
                           "λ₀ = 1, default options (`layer_loss_budget=0.1`: the trainer picks m, f, d)"),
    "constrained_k1": ("cut", _constrained(), "λ₀ = 1, every layer on every token at every step"),
    **{
        f"constrained_k{k}": ("cut", _constrained(interval=k), f"λ₀ = 1, `layer_loss_interval={k}`, every layer")
        for k in (4, 8, 16)
    },
    **{
        f"constrained_f{f}": ("cut", _constrained(fraction=f), f"λ₀ = 1, `layer_loss_token_fraction={f}`")
        for f in (0.25, 0.0625)
    },
    # unbiased layer sampling (`layer_sample_size` m, by weight or in rotation), on a token share f, the layers without
    # grad scored for the dual step on a smaller share d
    **{
        f"constrained_{'rot' if rot else 'm'}{m}_f{f}_d{d}": (
            "cut",
            _constrained(fraction=f, layer_sample_size=m, dual_token_fraction=d, **({"layer_sampling": "rotation"} if rot else {})),
            f"λ₀ = 1, {m} layer{'s' * (m > 1)} {'in rotation' if rot else 'by weight'}, tokens {f}, dual tokens {d}",
        )
        for m, f, d, rot in ((1, 0.125, 0.03125, False), (1, 0.125, 0.03125, True), (1, 0.0625, 0.03125, False),
                             (2, 0.0625, 0.03125, False), (1, 0.25, 0.03125, False), (1, 0.5, 0.03125, False),
                             (1, 1.0, 0.03125, False))
    },
    # one layer on every token, on one optimizer step in 8 (no step above ~2× plain)
    "constrained_k8_m1_d0.03125": ("cut", _constrained(interval=8, layer_sample_size=1, dual_token_fraction=0.03125),
                                   "λ₀ = 1, `layer_loss_interval=8`, 1 layer by weight, every token, dual tokens 0.03125"),
    # λ held at 0 (no dual step during the run): the cost at the start of training, before any constraint is active
    "constrained_k1_dual0": ("cut", _constrained(dual_init=0.0, dual_update_interval=10**9), "λ = 0 held (run start)"),
}  # fmt: skip
DEFAULT_VARIANTS = [
    "sft", "erm", "constrained_budget", "constrained_k1", "constrained_k16", "constrained_f0.25", "constrained_f0.0625",
    "constrained_m1_f0.125_d0.03125", "constrained_rot1_f0.125_d0.03125", "constrained_m1_f0.5_d0.03125",
    "constrained_m1_f1.0_d0.03125", "constrained_k8_m1_d0.03125", "constrained_k1_dual0",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------------ FLOPs


def _default_interval() -> int:
    from hf_cut import ConstrainedSFTConfig

    return ConstrainedSFTConfig.__dataclass_fields__["layer_loss_interval"].default


def flop_model(shape: dict[str, Any], variant: str, activation_checkpointing: bool) -> float:
    """Predicted step-time ratio to plain SFT from matmul FLOPs alone (per step, forward + backward).

    Decoder layer: projections + causal attention, ×3 for forward and backward (+1 forward with activation
    checkpointing). Readout (TRL's chunked log-prob kernel): ×4 per row with grad (forward, recomputed tile, two
    gradient GEMMs), ×1 per row without. Plain SFT on CPU scores every position, on CUDA only the completion ones.
    """
    d, ff, seq, vocab, L = shape["hidden"], shape["intermediate"], shape["seq"], shape["vocab"], shape["layers"]
    dkv = d * shape["kv_heads"] // shape["heads"]
    layer = 2 * (2 * d * d + 2 * d * dkv + 3 * d * ff) + 2 * 2 * (seq + 1) / 2 * d
    readout = 2 * d * vocab
    positions = seq - 1
    completion = positions - (sum(shape["prompt_len"]) / 2 - 1)  # next-token targets inside the completion
    body = layer * L * seq * (4 if activation_checkpointing else 3)
    sft_rows = positions if shape["device"] == "cpu" else completion
    base = body + 4 * readout * sft_rows
    if variant == BASELINE:
        return 1.0
    options = dict(VARIANTS[variant][1])
    if "layer_loss_budget" not in options and options.get("constrained", True):  # the default budget, as the trainer
        from hf_cut.cost import allocate  # spends it (per token of the completion, FLOPs of this model)

        params = L * (2 * d * d + 2 * d * dkv + 3 * d * ff)  # the trainer's count: decoder layers, no embeddings
        chosen = allocate(0.1, (4 if activation_checkpointing else 3) * 2 * params + 4 * readout, readout, L)
        options.update(layer_loss_token_fraction=chosen.token_fraction, layer_sample_size=chosen.layer_sample_size,
                       dual_token_fraction=chosen.dual_token_fraction)  # fmt: skip
    fraction = options.get("layer_loss_token_fraction") or 1.0
    interval = options.get("layer_loss_interval", _default_interval())
    sampled = completion * fraction
    values = completion * (options.get("dual_token_fraction") or fraction)  # tokens of the layers without grad
    if not options.get("constrained", True):
        extra = 0.0  # ERM measures its layers on logged steps only, and the benchmark logs nothing
    elif options.get("dual_init", 0.0) > 0:
        m = min(options.get("layer_sample_size") or L - 1, L - 1)  # ℓ_1 … ℓ_{L−1} carry weight, ℓ_0 does not
        extra = 4 * readout * sampled * m + 1 * readout * values * (L - m)
    else:
        extra = 1 * readout * values * L
    return (body + 4 * readout * completion + extra / interval) / base


# -------------------------------------------------------------------------------------------------------- running


def run_all(shapes: dict[str, dict], all_variants: list[str], args) -> dict[str, Any]:
    import multiprocessing as mp

    results: dict[str, Any] = {}
    for shape_name, shape in shapes.items():
        method = args.start_method
        if method == "auto":  # CUDA must not meet a process forked after the driver was initialised
            method = "spawn" if shape["device"] == "cuda" else "forkserver"
        ctx = mp.get_context(method)
        if method == "forkserver":
            # the server imports the stack once; every run is a fresh fork of that clean, idle process
            ctx.set_forkserver_preload(["torch", "transformers", "datasets", "trl", "hf_cut", "run_one"])
        runs = []
        skipped = {item.partition(":")[2] for item in getattr(args, "skip", []) if item.partition(":")[0] == shape_name}
        variants = [v for v in all_variants if v not in skipped]
        for rep in range(args.repeats):
            k = rep % len(variants)
            order = variants[k:] + variants[:k]  # rotate, so no variant always runs first or after the same one
            for name in order:
                trainer, options, _ = VARIANTS[name]
                spec = dict(
                    shape=shape,
                    variant={"name": name, "trainer": trainer, "options": options},
                    steps=args.steps,
                    warmup=args.warmup,
                    seed=args.seed,
                    threads=args.threads,
                    activation_checkpointing=args.activation_checkpointing,
                )
                result = _run_in_fresh_process(ctx, spec)
                runs.append({"repeat": rep, "variant": name, "result": result})
                if result.get("ok"):
                    msg = f"mean step {result['mean_step_s']:.3f} s, peak {result['peak_mem_mib']:.0f} MiB"
                else:
                    msg = f"FAILED: {result.get('error')}"
                print(f"[{shape_name} repeat {rep + 1}/{args.repeats}] {name:22s} {msg}", flush=True)
        summary = summarize(runs, variants)
        for name in variants:
            if summary[name].get("ok"):
                summary[name]["flop_model_ratio"] = flop_model(shape, name, args.activation_checkpointing)
        results[shape_name] = {"shape": shape, "start_method": method, "summary": summary, "runs": runs}
    return results


def _run_in_fresh_process(ctx, spec: dict[str, Any]) -> dict[str, Any]:
    import run_one

    receive, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=run_one.child_main, args=(spec, send))
    proc.start()
    send.close()
    try:
        result = receive.recv()
    except EOFError:
        result = None
    proc.join()
    if result is None:
        return {"ok": False, "error": f"process exited with code {proc.exitcode} (killed, out of memory?)"}
    return result


# ----------------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--shapes",
        nargs="+",
        default=["cpu", "gpu"],
        choices=sorted(SHAPES),
        help="shapes to run; `gpu` is skipped without CUDA (default: cpu gpu)",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        default=DEFAULT_VARIANTS,
        choices=list(VARIANTS),
        help="variants (sft, the baseline, is always added)",
    )
    p.add_argument(
        "--skip",
        nargs="+",
        default=[],
        metavar="SHAPE:VARIANT",
        help="leave a variant out on one shape (e.g. smollm2:constrained_k1, ~30 s a step there)",
    )
    p.add_argument("--repeats", type=int, default=None, help="interleaved repeats (default 5; --quick: 1)")
    p.add_argument("--steps", type=int, default=None, help="timed optimizer steps per run, a multiple of every `layer_loss_interval` (default 16; --quick: 2)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 2; --quick: 1)")
    p.add_argument("--quick", action="store_true", help="tiny shapes and few steps: a smoke test, not a measurement")
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON report (default bench/results/performance.json; --quick: none unless given)",
    )
    p.add_argument(
        "--markdown",
        type=Path,
        default=None,
        help="markdown file whose benchmark block is rewritten (default docs/performance.md; --quick: none)",
    )
    p.add_argument("--no-markdown", action="store_true", help="do not write the markdown table")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads per run (default: torch's own; --quick: 1, as spinning OpenMP threads make "
        "tiny steps 100x slower on a busy machine)",
    )
    p.add_argument(
        "--no-activation-checkpointing",
        dest="activation_checkpointing",
        action="store_false",
        help="turn off activation checkpointing (on by default, as in TRL's SFTConfig)",
    )
    p.add_argument(
        "--start-method",
        choices=["auto", "forkserver", "spawn"],
        default="auto",
        help="how each run's fresh process starts: forked from an idle server that imported the stack "
        "once (forkserver), or a new interpreter (spawn: re-imports everything, ~10 s a run); "
        "auto (default): forkserver for CPU shapes, spawn for CUDA shapes",
    )
    args = p.parse_args(argv)
    defaults = (1, 2, 1) if args.quick else (5, 16, 2)
    for key, default in zip(("repeats", "steps", "warmup"), defaults, strict=True):
        if getattr(args, key) is None:
            setattr(args, key, default)
    if args.quick and args.threads is None:
        args.threads = 1
    for item in args.skip:
        shape, _, variant = item.partition(":")
        if shape not in SHAPES or variant not in VARIANTS or variant == BASELINE:
            p.error(f"--skip {item!r}: expected SHAPE:VARIANT with a shape of {sorted(SHAPES)} and a variant other than sft")
    if args.repeats < 1 or args.steps < 1 or args.warmup < 0:
        p.error("--repeats and --steps must be >= 1, --warmup >= 0")
    intervals = {VARIANTS[v][1].get("layer_loss_interval", 1) for v in args.variants}
    if not args.quick and any(args.steps % k for k in intervals):
        p.error(f"--steps {args.steps} must be a multiple of every variant's layer_loss_interval {sorted(intervals)}")
    if not args.quick:
        args.output = args.output or ROOT / "bench" / "results" / "performance.json"
        args.markdown = args.markdown or ROOT / "docs" / "performance.md"
    if args.no_markdown:
        args.markdown = None
    args.variants = [BASELINE] + [v for v in dict.fromkeys(args.variants) if v != BASELINE]
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    import torch

    catalogue = QUICK_SHAPES if args.quick else SHAPES
    shapes, skipped = {}, {}
    for name in args.shapes:
        if catalogue[name]["device"] == "cuda" and not torch.cuda.is_available():
            skipped[name] = "CUDA is not available"
            print(f"skipping shape {name!r}: CUDA is not available", flush=True)
        else:
            shapes[name] = catalogue[name]
    command = "python bench/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = {
        "command": command.strip(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine_info(),
        "settings": {k: getattr(args, k) for k in ("repeats", "steps", "warmup", "quick", "seed", "threads",
                                                   "activation_checkpointing", "start_method", "variants")},
        "skipped_shapes": skipped,
    }  # fmt: skip
    cores, load = report["machine"]["usable_cpus"] or 1, report["machine"]["load_average"]
    if load and load[0] > 0.5 * cores:
        print(f"warning: load average {load[0]:.1f} on {cores} cores: other jobs are running, timings will be noisy "
              "(on a shared machine, --threads 1 avoids the worst of OpenMP's spinning)", flush=True)  # fmt: skip
    report["shapes"] = run_all(shapes, args.variants, args)
    report["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    text = markdown_report(report, {name: VARIANTS[name][2] for name in VARIANTS})
    print("\n" + text, flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(report, indent=1, default=str) + "\n", encoding="utf-8")
        print(f"\nwrote {args.output}", flush=True)
    else:
        print("\n" + json.dumps({k: v["summary"] for k, v in report["shapes"].items()}, indent=1), flush=True)
    if args.markdown:
        write_markdown(args.markdown, text)
        print(f"wrote {args.markdown}", flush=True)
    return report


if __name__ == "__main__":
    main()
