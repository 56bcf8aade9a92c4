"""Bias and variance of the Lagrangian's gradient estimators, and what they do to Adam's second moment.

For a trained causal LM (a folder written by ``recipes/llama_sft.py``) and dual variables λ, on the built-in data:

1. **Fixed batch.** The full gradient ``g = ∇(ℓ_L + Σ_l λ_l ℓ_l)`` (every layer on every token) and ``R`` draws of an
   estimator ``ĝ`` (token fraction f, or m layers sampled by weight). Per layer term and in total: the relative bias
   ``‖mean ĝ − g‖ / ‖g‖`` next to the size it would have from the draws' noise alone (``sqrt(tr Var / R) / ‖g‖``), and
   the relative variance ``E‖ĝ − g‖² / ‖g‖²``.
2. **Adam's second moment.** Over ``B`` different batches, one draw each: ``v = mean ĝ²`` per parameter, as Adam's
   ``exp_avg_sq`` tracks it, against the same with the full gradient. The ratio ``sqrt(v_f / v_1)`` is how much the
   estimator shrinks Adam's step on every direction, the last layer's included; and the mini-batch noise
   ``E‖g_b − ḡ‖² / ‖ḡ‖²`` with and without the estimator.

    python bench/gradient_check.py --model outputs/est/k1_hard_s0 --fractions 1 0.25 0.0625 --output bench/results/gradient_check.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def build(model_dir: str, batch_size: int, num_examples: int):
    """The model (with the layer readout) and ``batch_size``-row batches of the built-in training data."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from hf_cut import ConstrainedSFTConfig, ConstrainedSFTTrainer
    from hf_cut.data import load_instruction_dataset

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    data = load_instruction_dataset("builtin")["train"].select(range(num_examples))
    args = ConstrainedSFTConfig(
        output_dir=tempfile.mkdtemp(), max_length=128, per_device_train_batch_size=batch_size, use_cpu=True,
        bf16=False, report_to="none", layer_loss_interval=1, activation_checkpointing=False, disable_tqdm=True,
    )  # fmt: skip
    trainer = ConstrainedSFTTrainer(model, args, train_dataset=data, processing_class=tokenizer)
    batches = [{k: v for k, v in b.items()} for b in trainer.get_train_dataloader()]
    return trainer.model, batches


def term_grads(model, batch, duals: torch.Tensor, request) -> torch.Tensor:
    """``[L + 1, P]``: row 0 the gradient of ℓ_L (every token), row l the gradient of λ_l ℓ_l as estimated."""
    params = [p for p in model.parameters() if p.requires_grad]
    out = model(**batch, use_cache=False, layer_readout=request)
    terms = [out.loss] + [duals[l - 1] * out.layer_losses[l] for l in range(1, len(duals) + 1)]
    rows = []
    for term in terms:
        if not term.requires_grad:
            rows.append(torch.zeros(sum(p.numel() for p in params)))
            continue
        grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
        rows.append(
            torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1) for g, p in zip(grads, params)])
        )
    return torch.stack(rows)


def request_for(fraction: float, duals: torch.Tensor):
    from hf_cut.readout import LayerReadoutRequest

    grad_layers = [l >= 1 and duals[l - 1] > 0 for l in range(len(duals))]
    return LayerReadoutRequest(token_fraction=fraction, grad_layers=grad_layers)


def fixed_batch(model, batch, duals, fraction: float, draws: int) -> dict:
    full = term_grads(model, batch, duals, request_for(1.0, duals))
    samples = torch.stack([term_grads(model, batch, duals, request_for(fraction, duals)) for _ in range(draws)])
    names = ["ℓ_L"] + [f"λ_{l} ℓ_{l}" for l in range(1, len(duals) + 1)] + ["total"]
    full = torch.cat([full, full.sum(0, keepdim=True)])
    samples = torch.cat([samples, samples.sum(1, keepdim=True)], dim=1)
    result = {}
    for i, name in enumerate(names):
        g, s = full[i], samples[:, i]
        norm = g.norm().item()
        if norm == 0:
            continue
        mean = s.mean(0)
        var = ((s - mean) ** 2).sum(1).mean().item()
        result[name] = {
            "grad_norm": norm,
            "relative_bias": (mean - g).norm().item() / norm,
            "bias_noise_floor": (var / draws) ** 0.5 / norm,
            "relative_variance": ((s - g) ** 2).sum(1).mean().item() / norm**2,
        }
    return result


def adam_second_moment(model, batches, duals, fraction: float) -> dict:
    """Over ``B`` batches, one draw each: ``sqrt(v_f / v_1)`` per parameter (``v`` = mean of ĝ², Adam's
    ``exp_avg_sq`` without the decay), and the noise around the mean gradient ``ḡ`` with and without the estimator."""
    full, frac = [], []
    for batch in batches:
        full.append(term_grads(model, batch, duals, request_for(1.0, duals)).sum(0))
        frac.append(term_grads(model, batch, duals, request_for(fraction, duals)).sum(0))
    full, frac = torch.stack(full), torch.stack(frac)
    v_full, v_frac = (full**2).mean(0), (frac**2).mean(0)
    keep = v_full > 0
    ratio = (v_frac[keep] / v_full[keep]).sqrt()
    by_group, start = {}, 0  # the same median per parameter group (embeddings, each layer, final norm, head)
    for name, param in ((n, p) for n, p in model.named_parameters() if p.requires_grad):
        group = ".".join(name.split(".")[:3]) if ".layers." in name else name.rsplit(".", 1)[0]
        by_group.setdefault(group, []).append(torch.arange(start, start + param.numel()))
        start += param.numel()
    group_ratio = {}
    for group, idx in by_group.items():
        idx = torch.cat(idx)
        idx = idx[keep[idx]]
        if idx.numel():
            group_ratio[group] = (v_frac[idx] / v_full[idx]).sqrt().median().item()
    mean_grad = full.mean(0)
    norm2 = (mean_grad**2).sum().item()
    return {
        "denominator_ratio_median": ratio.median().item(),
        "denominator_ratio_mean": ratio.mean().item(),
        "share_of_parameters_ratio_above_1.5": (ratio > 1.5).float().mean().item(),
        "denominator_ratio_median_by_group": group_ratio,
        # E_b ‖g_b − ḡ‖² / ‖ḡ‖²: the mini-batch noise plain SGD already has, and with the estimator on top
        "minibatch_relative_variance_full": ((full - mean_grad) ** 2).sum(1).mean().item() / norm2,
        "minibatch_relative_variance_estimator": ((frac - mean_grad) ** 2).sum(1).mean().item() / norm2,
    }


MARKS = ("<!-- gradient-check:start -->", "<!-- gradient-check:end -->")


def markdown_table(reports: dict[str, dict], command: str) -> str:
    """One row per (report, fraction): bias against its noise floor, variance, Adam's denominator, mini-batch noise."""
    lines = [
        f"Produced by `{command}` ({next(iter(reports.values()))['draws']} draws on a fixed batch of 32 rows; Adam "
        f"statistics over {next(iter(reports.values()))['batches']} batches). Bias and its noise floor are relative to "
        "‖g‖; the relative variance is E‖ĝ − g‖² / ‖g‖²; Adam's denominator is the median over parameters of "
        "sqrt(v_f / v_1); mini-batch noise is E_b‖g_b − ḡ‖² / ‖ḡ‖² with every token / with the estimator.",
        "",
        "| model, λ | Σλ | token fraction | bias | noise floor | relative variance | Adam denominator × "
        "| mini-batch noise: full → estimator |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in reports.items():
        for fraction, v in r["fractions"].items():
            t, a = v["fixed_batch"]["total"], v["adam"]
            lines.append(
                f"| {name} | {sum(r['duals']):.2f} | {float(fraction):g} | {t['relative_bias']:.3f} "
                f"| {t['bias_noise_floor']:.3f} | {t['relative_variance']:.2f} | {a['denominator_ratio_median']:.2f} "
                f"| {a['minibatch_relative_variance_full']:.1f} → {a['minibatch_relative_variance_estimator']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", help="a folder written by recipes/llama_sft.py (model + tokenizer)")
    p.add_argument("--tabulate", nargs="+", metavar="NAME=JSON", help="only tabulate saved results (no model)")
    p.add_argument("--markdown", type=Path, help="with --tabulate: rewrite this file's gradient-check block")
    p.add_argument("--duals", type=float, nargs="+", help="λ_1 … λ_L (default: the run's final duals)")
    p.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.0625])
    p.add_argument("--draws", type=int, default=32, help="draws per estimator on the fixed batch")
    p.add_argument("--batches", type=int, default=16, help="batches for Adam's second moment")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path)
    args = p.parse_args(argv)
    if args.tabulate:
        reports = {}
        for item in args.tabulate:
            name, _, path = item.rpartition("=")
            reports[name or path] = json.loads(Path(path).read_text())
        command = "python bench/gradient_check.py --tabulate " + shlex.join(args.tabulate)
        text = markdown_table(reports, command)
        print(text)
        if args.markdown:
            sys.path.insert(0, str(ROOT / "bench"))
            from perf_report import write_markdown

            write_markdown(args.markdown, text, MARKS)
        return reports
    if not args.model:
        p.error("--model is required (or --tabulate)")
    torch.manual_seed(args.seed)
    duals = args.duals
    if duals is None:
        duals = json.loads((Path(args.model) / "layer_losses.json").read_text())["dual_variables"]
    duals = torch.tensor(duals, dtype=torch.float32)
    model, batches = build(args.model, args.batch_size, args.batch_size * args.batches)
    model.eval()  # no dropout; the readout's token sampling does not depend on the mode
    result = {
        "model": args.model,
        "duals": duals.tolist(),
        "draws": args.draws,
        "batches": len(batches),
        "fractions": {},
    }
    for fraction in args.fractions:
        result["fractions"][str(fraction)] = {
            "fixed_batch": fixed_batch(model, batches[0], duals, fraction, args.draws),
            "adam": adam_second_moment(model, batches, duals, fraction),
        }
        print(json.dumps({fraction: result["fractions"][str(fraction)]}, indent=1, ensure_ascii=False))
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    return result


if __name__ == "__main__":
    main()
