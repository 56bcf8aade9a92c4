"""The video-denoising task (the paper's unrolled transformer): every layer's estimate of the clean frames, loss
``½ Σ_t ‖x_t − [X_l]_t‖²``, every clip weighted alike; the metric is the per-pixel RMSE of the last layer.

The models are those of :mod:`hf_cut.models.unrolled` or anything with the same interface: ``get_input_embeddings()``
and ``forward(noisy_frames=…, labels=…)`` returning ``example_losses`` ``[batch, L + 1]``.
"""

from __future__ import annotations

import torch

from ...noise import EmbeddingNoise
from . import BatchScore, EvalSession, Task

__all__ = ["DENOISING"]


def load(path: str):
    from ...models.unrolled import UnrolledTransformerModel

    model = UnrolledTransformerModel.from_pretrained(path)
    return model.to("cuda" if torch.cuda.is_available() else "cpu"), None


def open_session(model, processor, dataset, batch_size: int, noise: EmbeddingNoise | None = None, **_) -> EvalSession:
    data = dataset.with_format("torch", columns=["noisy_frames", "labels"])
    device = next(model.parameters()).device
    owns = noise is None or not noise.attached  # a hook given detached (a trainer's after train()) is attached here
    if owns:
        noise = (noise or EmbeddingNoise(0.0)).attach(model)
    state = {"pixels": None}

    def batches():
        for start in range(0, len(data), batch_size):
            batch = data[start : start + batch_size]
            yield batch["noisy_frames"].to(device), batch["labels"].to(device)

    return EvalSession(model, batches, noise, owns_noise=owns, state=state)


def score(session: EvalSession, batch) -> BatchScore:
    frames, labels = batch
    out = session.model(noisy_frames=frames, labels=labels)
    per_example = out.example_losses.double().cpu()
    session.state["pixels"] = labels[0].numel()
    return BatchScore(per_example.sum(0), len(per_example), per_example)


def finish(session: EvalSession, layer_losses: list[float], count: float, sums: dict[str, float]) -> dict:
    if not count:
        raise ValueError("The dataset to denoise is empty.")
    losses = torch.tensor(layer_losses, dtype=torch.float64)
    # f = ½ Σ (x − x̂)²  ⇒  mean squared pixel error = 2 f / (T n)
    layer_rmse = (2.0 * losses / session.state["pixels"]).sqrt()
    return {
        "rmse": layer_rmse[-1].item(),
        "layer_rmse": layer_rmse.tolist(),
        "loss": layer_losses[-1],
        "layer_losses": layer_losses,
        "monotone": bool((losses[1:] < losses[:-1]).all()),
        "num_examples": int(count),
    }


def prepare(models, options: dict):
    """The test clips: ``dataset`` (required: a ``Dataset`` with ``noisy_frames`` and ``labels``), its first
    ``limit``."""
    dataset, limit = options.pop("dataset", None), options.pop("limit", None)
    if dataset is None:
        raise ValueError("sweep('denoising', …): `dataset` (the test clips) is required.")
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    return dataset, {}, {}


DENOISING = Task("denoising", load, open_session, score, finish, weighting="example", metric="rmse", prepare=prepare,
                 scalars=("rmse", "loss", "pair_satisfaction", "example_satisfaction", "descent_ratio_mean"),
                 shares=("monotone",), batch_size=256)  # fmt: skip
