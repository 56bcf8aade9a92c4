"""Out-of-distribution γ sweep: per-layer losses, the task metric and constraint statistics as the input noise grows.

For every model, seed and γ, the evaluation set is scored with the embedding-noise hook of the trainer at that γ,
through the same layerwise readout the trainer uses. ``torch.manual_seed(seed)`` is set before each pass, so models
that share a tokenizer see the same noise draws.
"""

from __future__ import annotations

import os
import statistics
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from ..readout import LayerReadoutRequest
from .stats import constraint_statistics, per_example_layer_losses

__all__ = ["SweepResult", "evaluate_causal_lm", "ood_sweep", "aggregate_records", "SCALAR_METRICS"]

# Scalar fields of a record aggregated over seeds (mean and spread)
SCALAR_METRICS = ("loss", "token_accuracy", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean")


@dataclass
class SweepResult:
    """One record per (model, γ, seed) and the aggregates over seeds per (model, γ)."""

    records: list[dict] = field(default_factory=list)
    aggregates: list[dict] = field(default_factory=list)
    config: dict = field(default_factory=dict)


def _eval_trainer(model, tokenizer, dataset, batch_size: int):
    """A ConstrainedSFTTrainer used only for TRL's preprocessing, collator and the readout (never trains)."""
    from ..config import ConstrainedSFTConfig
    from ..trainer import ConstrainedSFTTrainer

    args = ConstrainedSFTConfig(
        output_dir=tempfile.mkdtemp(prefix="hf_cut_sweep_"),
        constrained=False,
        per_device_eval_batch_size=batch_size,
        report_to=[],
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    # SFTTrainer requires a train set; one example keeps its preprocessing negligible
    return ConstrainedSFTTrainer(
        model=model, args=args, train_dataset=dataset.select(range(1)), eval_dataset=dataset, processing_class=tokenizer
    )


@torch.inference_mode()
def evaluate_causal_lm(trainer, gamma: float, seed: int, alpha: float, noise_mean: float = 0.0) -> dict:
    """Score the trainer's eval set once at noise level ``gamma``: per-layer loss, token accuracy, constraint stats."""
    model = trainer.model
    was_training = model.training
    model.eval()
    trainer.noise.gamma, trainer.noise.mean = float(gamma), float(noise_mean)
    torch.manual_seed(seed)
    loss_sums, correct, tokens, example_losses = None, 0.0, 0.0, []
    try:
        for batch in trainer.get_eval_dataloader():
            batch = trainer._prepare_inputs(batch)
            out = model(**batch, use_cache=False, layer_readout=LayerReadoutRequest(return_token_log_probs=True))
            token_nll = -out.layer_token_log_probs.double()
            loss_sums = token_nll.sum(1) if loss_sums is None else loss_sums + token_nll.sum(1)
            tokens += out.num_tokens.item()
            correct += out.is_top1.sum().item()
            per_example, _ = per_example_layer_losses(
                out.layer_token_log_probs, out.token_positions, batch["input_ids"].shape[0]
            )
            example_losses.append(per_example.cpu())
    finally:
        trainer.noise.gamma, trainer.noise.mean = 0.0, 0.0
        model.train(was_training)
    if not tokens:
        raise ValueError("The evaluation set has no completion token to score.")
    layer_losses = (loss_sums / tokens).tolist()
    stats = constraint_statistics(torch.cat(example_losses), alpha)
    return {
        "gamma": float(gamma),
        "seed": int(seed),
        "loss": layer_losses[-1],
        "token_accuracy": correct / tokens,
        "layer_losses": layer_losses,
        "num_tokens": int(tokens),
        **stats,
    }


def aggregate_records(records: Sequence[dict], metrics: Sequence[str] = SCALAR_METRICS) -> list[dict]:
    """Mean and spread (sample standard deviation; 0 for a single record) over seeds, per (model label, γ), of the
    scalar ``metrics`` that every record of the group has, and of the layer losses."""
    groups: dict[tuple[str, float], list[dict]] = {}
    for record in records:
        groups.setdefault((record["model"], record["gamma"]), []).append(record)
    aggregates = []
    for (model, gamma), group in groups.items():
        row = {"model": model, "gamma": gamma, "num_records": len(group)}
        for name in (m for m in metrics if all(m in r for r in group)):
            values = [r[name] for r in group]
            row[f"{name}_mean"] = statistics.fmean(values)
            row[f"{name}_std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        layers = list(zip(*(r["layer_losses"] for r in group)))
        row["layer_losses_mean"] = [statistics.fmean(v) for v in layers]
        row["layer_losses_std"] = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in layers]
        aggregates.append(row)
    return aggregates


def sweep_labels(
    models: Sequence[str], gammas: Sequence[float], alpha: float, labels: Sequence[str] | None
) -> list[str]:
    """Check a sweep's arguments before any model is loaded; the labels (default: the directory names)."""
    from ..validation import check_alpha, check_gammas, check_labels

    check_gammas(gammas, name="gammas")
    check_alpha(alpha, name="alpha")
    check_labels(labels, models, name="labels")
    return list(labels) if labels else [os.path.basename(os.path.normpath(m)) for m in models]


def _load(model_path: str):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from ..models.smollm2 import resolve_model_name

    model_path = resolve_model_name(model_path)  # "smollm2": the packaged SmolLM2-135M-Instruct

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    return model, tokenizer


def ood_sweep(
    models: Sequence[str],
    gammas: Sequence[float],
    dataset: str | None = None,
    seeds: Sequence[int] = (0,),
    alpha: float = 0.1,
    batch_size: int = 32,
    labels: Sequence[str] | None = None,
    limit: int | None = None,
    noise_mean: float = 0.0,
    progress: bool = True,
) -> SweepResult:
    """Sweep γ for several saved models on the same evaluation set.

    Args:
        models: paths (or Hub names) of saved causal LMs with their tokenizers; ``"smollm2"`` is the packaged
            SmolLM2-135M-Instruct (:func:`hf_cut.models.packaged_smollm2_path`).
        gammas: noise levels γ; 0 is in distribution.
        dataset: ``None`` for the built-in held-out split, else a Hub name or local path for
            :func:`hf_cut.data.load_instruction_dataset` (its ``test`` split is used).
        seeds: noise seeds; every (model, γ) is scored once per seed.
        alpha: α of the constraints whose satisfaction is measured.
        labels: one name per model (default: the directory names). Models may share a label (e.g. the same recipe
            trained with several seeds): the aggregates then pool them, and their spread is over training seeds too.
        limit: score only the first ``limit`` examples.
    """
    from ..data import load_instruction_dataset

    labels = sweep_labels(models, gammas, alpha, labels)
    eval_set = load_instruction_dataset(dataset or "builtin")["test"]
    if limit is not None:
        eval_set = eval_set.select(range(min(limit, len(eval_set))))
    result = SweepResult(
        config={
            "models": [{"label": label, "path": path} for label, path in zip(labels, models)],
            "gammas": [float(g) for g in gammas],
            "seeds": [int(s) for s in seeds],
            "alpha": alpha,
            "dataset": dataset or "builtin",
            "num_examples": len(eval_set),
        }
    )
    bar = tqdm(total=len(models) * len(seeds) * len(gammas), desc="γ sweep", disable=not progress)
    for label, path in zip(labels, models):
        model, tokenizer = _load(path)
        trainer = _eval_trainer(model, tokenizer, eval_set, batch_size)
        for seed in seeds:
            for gamma in gammas:
                bar.set_postfix(model=label, gamma=gamma, seed=seed)
                record = evaluate_causal_lm(trainer, gamma, seed, alpha, noise_mean)
                result.records.append({"model": label, "path": path, **record})
                bar.update()
        del trainer, model
    bar.close()
    result.aggregates = aggregate_records(result.records)
    return result
