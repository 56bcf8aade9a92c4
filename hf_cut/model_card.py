"""The hf-cut section of a trained model's card: α, the dual variables and the per-layer losses."""

from __future__ import annotations

import os
import shlex
import sys
from collections.abc import Sequence

PAPER = {
    "title": "A Constrained Optimization Perspective of Unrolled Transformers",
    "id": "2601.17257",
    "citation": """\
@article{porrasvalenzuela2026constrained,
    title   = {{A Constrained Optimization Perspective of Unrolled Transformers}},
    author  = {Porras-Valenzuela, Javier and Hadou, Samar and Ribeiro, Alejandro},
    year    = 2026,
    journal = {arXiv preprint arXiv:2601.17257}
}""",
}


BASELINE = "ERM"  # the one name of the unconstrained baseline: labels, model cards, reports


def method_label(args) -> str:
    """The run's method, as labels, cards and reports name it: ``"constrained"``, ``"deep supervision"`` or ``"ERM"``."""
    if args.constrained:
        return "constrained"
    return "deep supervision" if getattr(args, "deep_supervision_weight", 0) > 0 else BASELINE


def constraint_section(
    args,
    duals: Sequence[float],
    layer_losses: dict[int, float],
    eval_layer_losses: dict[int, float] | None = None,
    command: str | None = None,
    cost=None,
) -> str:
    """Markdown describing the constrained training of a model (appended to the card TRL writes)."""
    mode = {"constrained": "constrained (primal–dual)", BASELINE: f"{BASELINE} (the baseline: no constraint)"}.get(
        method_label(args), method_label(args)
    )
    lines = [
        "## Layerwise descent constraints (hf-cut)",
        "",
        f"Trained with [hf-cut](https://arxiv.org/abs/{PAPER['id']}): {mode}. Every layer's hidden state is read out "
        "by the model's own head; the constraints ask each layer to lower the loss by a fraction α, "
        "`ℓ_l ≤ (1 − α) ℓ_(l−1)`.",
        "",
        "| option | value |",
        "| --- | --- |",
        f"| descent_alpha (α) | {args.descent_alpha} |",
        f"| dual_lr (η_d) | {args.dual_lr} |",
        f"| dual_update_interval | {args.dual_update_interval} |",
        f"| resilience_coef (β) | {args.resilience_coef} |",
        f"| constrained_layers | {getattr(args, 'constrained_layers', 'all')} |",
        f"| noise_gamma (γ, training) | {args.noise_gamma} |",
        f"| layer_loss_budget | {getattr(args, 'layer_loss_budget', None)} |",
        f"| layer_sample_size | {cost.layer_sample_size if cost else args.layer_sample_size} |",
        f"| layer_loss_token_fraction | {cost.token_fraction if cost else args.layer_loss_token_fraction} |",
        f"| dual_token_fraction | {cost.dual_token_fraction if cost else args.dual_token_fraction} |",
        f"| layer_loss_interval | {args.layer_loss_interval} |",
        f"| detach_previous_loss | {args.detach_previous_loss} |",
        f"| deep_supervision_weight | {args.deep_supervision_weight} |",
        "",
    ]
    if layer_losses:
        has_eval = bool(eval_layer_losses)
        header = "| layer l | train loss ℓ_l |" + (" eval loss ℓ_l |" if has_eval else "") + " dual λ_l |"
        lines += [header, "| --- | --- |" + (" --- |" if has_eval else "") + " --- |"]
        for layer in sorted(layer_losses):
            row = f"| {layer} | {layer_losses[layer]:.4f} |"
            if has_eval:
                value = eval_layer_losses.get(layer)
                row += f" {value:.4f} |" if value is not None else " |"
            row += f" {duals[layer - 1]:.4f} |" if layer >= 1 else " – |"
            lines.append(row)
        lines.append("")
    else:
        lines += ["Final dual variables λ_1 … λ_L: " + ", ".join(f"{d:.4f}" for d in duals), ""]
    command = command or " ".join(shlex.quote(a) for a in [os.path.basename(sys.executable), *sys.argv])
    lines += ["Command:", "", "```bash", command, "```", ""]
    return "\n".join(lines)
