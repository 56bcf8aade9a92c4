"""The readout on every causal-LM class transformers ships whose tiny config can be built generically: each layer's
loss equals the model's own loss with only its first l layers kept (its own final norm, head and logit transforms —
Gemma 2's softcap, Cohere's scale, Granite's scaling — applied by its own forward). ``python -m bench.architectures``
measures every class and writes ``bench/results/architectures.json``; this test checks a sample of families in CI,
and the committed count against the README."""

from __future__ import annotations

import copy
import json
import os
import re

import pytest
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results", "architectures.json")


def truncated_model_losses(model, ids: torch.Tensor, labels: torch.Tensor) -> list[float]:
    """ℓ_0 … ℓ_L computed independently of the readout: the model's own forward (its norm, head, transforms) on a copy
    that keeps only its first l decoder layers."""
    from hf_cut.readout import num_layers
    from hf_cut.readout.final_modules import decoder_layers

    L = num_layers(model)
    losses = []
    for l in range(L + 1):
        cut = copy.deepcopy(model)
        layers = decoder_layers(cut.base_model, L)
        del layers[l:]
        config = cut.config.get_text_config()
        for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
            if isinstance(getattr(config, name, None), int):
                setattr(config, name, l)
        for name, value in list(vars(config).items()):  # per-layer settings (layer_types, mlp_layer_types, …)
            if isinstance(value, list) and len(value) == L:
                try:
                    setattr(config, name, value[:l])
                except AttributeError:  # derived from the layer count (a read-only property)
                    pass
        with torch.no_grad():
            logits = cut(input_ids=ids, use_cache=False).logits.float()
        losses.append(F.cross_entropy(logits[:, :-1].flatten(0, 1), labels[:, 1:].flatten(), ignore_index=-100).item())
    return losses


SAMPLE = ["llama", "gpt2", "gpt_neox", "opt", "gemma2", "cohere", "granite", "phi", "qwen2", "falcon", "bloom", "lfm2"]


@pytest.mark.parametrize("model_type", SAMPLE)
def test_layer_losses_equal_the_truncated_models(model_type):
    from bench.architectures import check_model_type

    result = check_model_type(model_type)
    assert result["status"] == "ok", result


def test_the_readme_gives_the_measured_count():
    results = json.load(open(RESULTS, encoding="utf-8"))
    ok = sum(r["status"] == "ok" for r in results["models"].values())
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    match = re.search(r"(\d+) of the (\d+) causal-LM classes", readme)
    assert match, "the README's architecture line is missing"
    assert (int(match.group(1)), int(match.group(2))) == (ok, len(results["models"]))
