"""The report of ``bench/benchmark.py``: the machine it ran on, the markdown tables, the marked block of the docs."""

from __future__ import annotations

import os
import platform
import statistics
from pathlib import Path
from typing import Any

__all__ = [
    "MARK_END",
    "MARK_START",
    "machine_info",
    "markdown_report",
    "mean_std",
    "median",
    "paired_ratios",
    "summarize",
    "write_markdown",
]

BASELINE = "sft"  # the plain SFTTrainer variant every ratio is taken against

MARK_START, MARK_END = "<!-- benchmark:start -->", "<!-- benchmark:end -->"


def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    import torch  # transformers and TRL are not imported here: the runs' processes do, the versions are metadata

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": version("transformers"),
        "trl": version("trl"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    return info


def _loads(values) -> str:
    return ", ".join(f"{x:.2f}" for x in values) if values else "–"


def _threads(report: dict[str, Any]) -> list[int]:
    runs = [r["result"] for res in report["shapes"].values() for r in res["runs"] if r["result"].get("ok")]
    return sorted({r["threads"] for r in runs})


def _fmt(value, spec: str, missing: str = "–") -> str:
    return missing if value is None else format(value, spec)


def markdown_report(report: dict[str, Any], descriptions: dict[str, str]) -> str:
    """The markdown block: command, machine, settings, then one table per shape (``descriptions``: variant -> what it
    sets)."""
    m, s = report["machine"], report["settings"]
    lines = [
        f"Produced by `{report['command']}` on {report['date']}.",
        "",
        f"Machine: {m['cpu']}, {m['usable_cpus']} usable CPU cores ({m['cpu_count']} online), {m['platform']}"
        + (f", GPU {m['gpu']}" if m["gpu"] else "")
        + f"; Python {m['python']}, torch {m['torch']}, transformers {m['transformers']}, trl {m['trl']}. "
        f"Load average (1, 5, 15 min) at the start: {_loads(m['load_average'])}; at the end: "
        f"{_loads(report.get('load_average_end'))}.",
        "",
        f"{s['repeats']} interleaved repeats × {s['steps']} timed steps after {s['warmup']} warm-up steps; activation "
        f"checkpointing {'on' if s['activation_checkpointing'] else 'off'}; torch threads per run: "
        f"{', '.join(map(str, _threads(report))) or '–'}; one fresh process per run.",
    ]
    for shape_name, res in report["shapes"].items():
        sh = res["shape"]
        mem = "peak RSS of the run's process" if sh["device"] == "cpu" else "`torch.cuda.max_memory_allocated`"
        lines += [
            "",
            f"### `{shape_name}`: Llama, hidden {sh['hidden']}, FFN {sh['intermediate']}, {sh['layers']} layers, "
            f"{sh['heads']}/{sh['kv_heads']} heads, vocab {sh['vocab']}, seq {sh['seq']}, batch {sh['batch']}, "
            f"prompt {sh['prompt_len'][0]}–{sh['prompt_len'][1]} tokens, {sh['dtype']} on {sh['device']}",
            "",
            f"Memory: {mem}. Step: mean over a run's timed steps (with `layer_loss_interval` K, one step in K measures "
            f"the layers), median over repeats. Time ratio: median over repeats of (variant / `sft` in the same "
            f"repeat), [min–max]. Slowest step: a run's slowest timed step / `sft`'s mean step, median over repeats. "
            f"Runs started by {res['start_method']}.",
            "",
            "| variant | setting | intermediate layers trained | step (s) | time ratio [min–max] | slowest step "
            "| FLOP model | peak memory (MiB) | memory ratio | training-memory ratio |",
            "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for name, e in res["summary"].items():
            desc = descriptions.get(name, "")
            if not e.get("ok"):
                lines.append(f"| `{name}` | {desc} | failed: {'; '.join(map(str, e['errors']))[:120]} | | | | | | | |")
                continue
            if e["grad_layers_min"] is None:
                grads = "–"
            elif e["grad_layers_min"] == e["grad_layers_max"]:
                grads = f"{e['grad_layers_min']} of {sh['layers'] - 1}"
            else:
                grads = f"{e['grad_layers_min']}–{e['grad_layers_max']} of {sh['layers'] - 1}"
            lines.append(
                f"| `{name}` | {desc} | {grads} | {e['mean_step_s']:.3f} "
                f"| {_fmt(e['time_ratio'], '.2f')} "
                f"[{_fmt(e['time_ratio_min'], '.2f')}–{_fmt(e['time_ratio_max'], '.2f')}] "
                f"| {_fmt(e.get('slowest_step_ratio'), '.2f')} "
                f"| {_fmt(e.get('flop_model_ratio'), '.2f')} | {e['peak_mem_mib']:.0f} | {_fmt(e['mem_ratio'], '.3f')} "
                f"| {_fmt(e['train_mem_ratio'], '.2f')} |"
            )
    for name, why in report.get("skipped_shapes", {}).items():
        lines += ["", f"Shape `{name}` skipped: {why}."]
    return "\n".join(lines)


def mean_std(values: list[float], scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± sample std`` of ``values`` times ``scale`` (the mean alone for one value)."""
    import statistics

    mean = statistics.fmean(values) * scale
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"


def write_markdown(path: Path, body: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    """Replace what lies between the ``marks`` of ``path`` (appending the marks if absent)."""
    start, end = marks
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n"
    block = f"{start}\n{body}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def median(values: list[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def paired_ratios(per_repeat: list[dict[str, float]], baseline: str = BASELINE) -> dict[str, list[float]]:
    """``per_repeat[r][variant]`` -> ``{variant: [value / baseline value of the same repeat, …]}`` (repeats where
    either failed are skipped). The baseline's own ratios are exactly 1.0."""
    out: dict[str, list[float]] = {}
    for values in per_repeat:
        base = values.get(baseline)
        for name, value in values.items():
            if base is not None and value is not None and base > 0:
                out.setdefault(name, []).append(1.0 if name == baseline else value / base)
    return out


def summarize(runs: list[dict[str, Any]], variants: list[str], baseline: str = BASELINE) -> dict[str, dict[str, Any]]:
    """Per variant: mean step time, peak memory and their paired ratios to ``baseline`` over the repeats."""
    repeats = sorted({r["repeat"] for r in runs})
    ok = [r for r in runs if r["result"].get("ok")]

    def table(key) -> list[dict[str, float]]:
        rows = []
        for rep in repeats:
            rows.append({r["variant"]: key(r["result"]) for r in ok if r["repeat"] == rep})
        return rows

    time_rows = table(lambda res: res["mean_step_s"])
    mem_rows = table(lambda res: res["peak_mem_mib"])
    train_mem_rows = table(lambda res: res["peak_mem_mib"] - res["mem_before_train_mib"])
    # the slowest timed step of a run against plain SFT's mean step in the same repeat: the spikes a user sees
    slow_rows = [
        {name: (row[name] if name == baseline else slow[name]) for name in row if name in slow or name == baseline}
        for row, slow in zip(time_rows, table(lambda res: max(res["step_times_s"])))
    ]
    slowest_ratios = paired_ratios(slow_rows, baseline)
    time_ratios, mem_ratios = paired_ratios(time_rows, baseline), paired_ratios(mem_rows, baseline)
    train_mem_ratios = paired_ratios(train_mem_rows, baseline)
    summary = {}
    for name in variants:
        mine = [r["result"] for r in ok if r["variant"] == name]
        failed = [r["result"].get("error") for r in runs if r["variant"] == name and not r["result"].get("ok")]
        if not mine:
            summary[name] = {"ok": False, "errors": failed}
            continue
        grads = [g for res in mine for g in res["grad_layers_per_step"]]
        entry = {
            "ok": True,
            "runs": len(mine),
            "errors": failed,
            "mean_step_s": median([res["mean_step_s"] for res in mine]),
            "peak_mem_mib": median([res["peak_mem_mib"] for res in mine]),
            "mem_before_train_mib": median([res["mem_before_train_mib"] for res in mine]),
            "grad_layers_min": min(grads) if grads else None,
            "grad_layers_max": max(grads) if grads else None,
            "final_duals_min": min((min(res["final_duals"]) for res in mine if res["final_duals"]), default=None),
        }
        ratio_tables = (("time", time_ratios), ("slowest_step", slowest_ratios), ("mem", mem_ratios),
                        ("train_mem", train_mem_ratios))  # fmt: skip
        for key, ratios in ratio_tables:
            values = ratios.get(name, [])
            entry[f"{key}_ratio"] = median(values) if values else None
            entry[f"{key}_ratio_min"] = min(values) if values else None
            entry[f"{key}_ratio_max"] = max(values) if values else None
        summary[name] = entry
    return summary
