"""The trained model's card: its metadata (base model, license, datasets, tags), the hf-cut section (α, the dual
variables, the per-layer losses) and the command that trained it, with secrets and local paths left out."""

from __future__ import annotations

import json
import os
import re
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


TAGS = ("hf-cut", f"arxiv:{PAPER['id']}")
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
    command = command or redact_command([os.path.basename(sys.executable), *sys.argv])
    lines += ["Command:", "", "```bash", command, "```", ""]
    return "\n".join(lines)


# a flag or KEY=value whose name holds one of these has its value redacted; so has anything shaped like a HF token
_SECRET_NAME = re.compile(r"token|secret|key|passw", re.IGNORECASE)
_HF_TOKEN = re.compile(r"\bhf_[A-Za-z0-9]{8,}")
REDACTED = "<redacted>"


def redact_command(argv: Sequence[str]) -> str:
    """``argv`` as a shell line fit to publish: the value of every flag (``--hub_token X``, ``--hub_token=X``) or
    ``KEY=value`` whose name holds token, secret, key or password is ``<redacted>``, as is anything shaped like a
    Hugging Face token (``hf_…``), and absolute local paths are reduced to their last part."""
    out: list[str] = []
    redact_next = False
    for arg in argv:
        if redact_next:
            out.append(REDACTED)
            redact_next = False
            continue
        name, eq, value = arg.partition("=")
        if arg.startswith("-") and _SECRET_NAME.search(name):
            if eq:
                out.append(f"{name}={REDACTED}")
            else:
                out.append(arg)
                redact_next = True
            continue
        if eq and not arg.startswith("-") and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) and _SECRET_NAME.search(name):
            out.append(f"{name}={REDACTED}")
            continue
        if eq and arg.startswith("-"):
            arg = f"{name}={_local_path_tail(value)}"
        else:
            arg = _local_path_tail(arg)
        out.append(_HF_TOKEN.sub(REDACTED, arg))
    return " ".join(shlex.quote(a) for a in out)


def _local_path_tail(value: str) -> str:
    return os.path.basename(os.path.normpath(value)) if os.path.isabs(value) else value


def base_model_id(model) -> str | None:
    """The Hub id of the model ``model`` was fine-tuned from: the name it was loaded by when that is not a local folder,
    else the ``_name_or_path`` the folder's own config.json records (None when neither names a Hub model). Under PEFT,
    the adapter's base model."""
    names = []
    peft_config = getattr(model, "peft_config", None)
    if isinstance(peft_config, dict) and peft_config:
        names.append(getattr(next(iter(peft_config.values())), "base_model_name_or_path", None))
    config = getattr(model, "config", None)
    names.append(getattr(config, "name_or_path", None))
    for name in filter(None, names):
        if not os.path.isdir(name):
            return name if not os.path.isabs(name) and not os.path.exists(name) else None
        config_file = os.path.join(name, "config.json")
        if os.path.isfile(config_file):
            with open(config_file, encoding="utf-8") as f:
                recorded = json.load(f).get("_name_or_path")
            if recorded and not os.path.exists(recorded) and not os.path.isabs(recorded):
                return recorded
    return None


def base_model_license(model, base_model: str | None) -> str | None:
    """The license of the base model when known: from the card (README.md) of the local folder it was loaded from, or
    from the Hub's card data (skipped offline); None otherwise."""
    from huggingface_hub import ModelCard

    folder = getattr(getattr(model, "config", None), "name_or_path", None)
    if folder and os.path.isfile(os.path.join(folder, "README.md")):
        try:
            return ModelCard.load(os.path.join(folder, "README.md")).data.get("license")
        except Exception:  # a README without card metadata
            return None
    if base_model and os.environ.get("HF_HUB_OFFLINE", "0").lower() not in ("1", "true", "yes"):
        try:
            from huggingface_hub import model_info

            card_data = model_info(base_model, timeout=10).card_data
            return card_data.get("license") if card_data else None
        except Exception:  # gated, private, offline: unknown
            return None
    return None


def complete_card(path: str, base_model: str | None, license: str | None, datasets: Sequence[str] = (),
                  tags: Sequence[str] = TAGS) -> None:  # fmt: skip
    """Fill in the metadata of the card at ``path`` that the parent trainer's card leaves out — ``base_model``,
    ``license``, ``library_name``, the hf-cut and arXiv tags, the Hub ``datasets`` — and name the base model in the
    text where the template wrote ``[None]``."""
    from huggingface_hub import ModelCard

    card = ModelCard.load(path)
    data = card.data
    if base_model:
        data.base_model = base_model
    if license:
        data.license = license
    data.library_name = data.get("library_name") or "transformers"
    data.tags = list(dict.fromkeys([*(data.get("tags") or []), *tags]))
    hub_datasets = [d for d in datasets if d and d != "builtin" and not os.path.exists(d) and not os.path.isabs(d)]
    if hub_datasets:
        data.datasets = list(dict.fromkeys([*(data.get("datasets") or []), *hub_datasets]))
    text = card.text
    none_link = "a fine-tuned version of [None](https://huggingface.co/None)"
    if base_model:
        text = text.replace(none_link, f"a fine-tuned version of [{base_model}](https://huggingface.co/{base_model})")
    text = text.replace(none_link, "a fine-tuned model")
    ModelCard(f"---\n{data.to_yaml()}\n---\n{text}").save(path)
