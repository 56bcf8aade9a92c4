"""Which causal-LM classes of the installed transformers the layer readout covers, as a number.

For every model type of ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` a tiny config is built generically (the config class
with its defaults, hidden size 32, 2 layers, 4 heads (2 key-value heads), a vocabulary of 96: whatever of those fields
the class takes),
the model is built from it, and the readout's ``ℓ_0 … ℓ_L`` are compared with the model's own loss when only its
first l layers are kept (``tests/test_readout_models.py::truncated_model_losses``: the model's own final norm, head
and logit transforms). A type is ``ok`` when every layer agrees to 1e-4 (relative, for losses above 1); the others
carry the reason (the tiny config
or the model cannot be built generically, a vision / audio / encoder-decoder model the text readout does not cover,
or a mismatch at some layer).

    python -m bench.architectures                  # bench/results/architectures.json, the README's count
    python -m bench.architectures llama gpt2      # some types, printed
"""

from __future__ import annotations

import argparse
import inspect
import json
import multiprocessing
import os
import sys
import traceback
import warnings

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUT = os.path.join(ROOT, "bench", "results", "architectures.json")
VOCAB = 96
SMALL = {
    "vocab_size": VOCAB, "hidden_size": 32, "n_embd": 32, "d_model": 32, "n_embed": 32, "dim": 32,
    "intermediate_size": 64, "ffn_dim": 64, "n_inner": 64, "ffn_hidden_size": 64, "moe_intermediate_size": 32,
    "num_hidden_layers": 2, "n_layer": 2, "num_layers": 2, "n_layers": 2,
    "num_attention_heads": 4, "n_head": 4, "n_heads": 4, "num_key_value_heads": 2,
    "max_position_embeddings": 128, "n_positions": 128,
}  # fmt: skip


def tiny_config(model_type: str):
    """The config class of ``model_type`` at its defaults, with the fields of :data:`SMALL` it takes."""
    from transformers import CONFIG_MAPPING

    config_class = CONFIG_MAPPING[model_type]
    accepted = set(inspect.signature(config_class.__init__).parameters) | {
        f for f in getattr(config_class, "__dataclass_fields__", {})
    }
    return config_class(**{k: v for k, v in SMALL.items() if k in accepted})


def check_model_type(model_type: str) -> dict:
    """``{"status": "ok" | reason, ...}`` for one model type."""
    from transformers import AutoModelForCausalLM

    from hf_cut.readout import LayerReadoutRequest, add_layer_readout, num_layers
    from tests.test_readout_models import truncated_model_losses

    try:
        config = tiny_config(model_type)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config).float().eval()
        L = num_layers(model)
    except Exception as error:  # noqa: BLE001  (recorded: the type is listed with its reason)
        return {"status": "not built generically", "error": f"{type(error).__name__}: {str(error)[:300]}"}
    if config.get_text_config() is not config:
        return {"status": "multimodal (the readout covers text decoders)", "class": type(model).__name__}
    ids = torch.randint(3, min(VOCAB, model.get_output_embeddings().weight.shape[0]), (2, 12),
                        generator=torch.Generator().manual_seed(1))  # fmt: skip
    try:
        with torch.no_grad():
            model(input_ids=ids, use_cache=False)
    except Exception as error:  # noqa: BLE001
        return {"status": "not built generically (the tiny model does not run)", "class": type(model).__name__,
                "error": f"{type(error).__name__}: {str(error)[:300]}"}  # fmt: skip
    labels = ids.clone()
    labels[:, :4] = -100
    try:
        expected = truncated_model_losses(model, ids, labels)
    except Exception as error:  # noqa: BLE001
        return {"status": "no reference (the model cannot run truncated)", "class": type(model).__name__,
                "error": f"{type(error).__name__}: {str(error)[:300]}"}  # fmt: skip
    try:
        add_layer_readout(model)
        with torch.no_grad():
            got = model(input_ids=ids, labels=labels, layer_readout=LayerReadoutRequest()).layer_losses.tolist()
    except Exception as error:  # noqa: BLE001
        return {"status": "readout failed", "class": type(model).__name__,
                "error": f"{type(error).__name__}: {str(error)[:300]}"}  # fmt: skip
    worst = float("inf")
    if len(got) == len(expected):
        worst = max(abs(a - b) / max(1.0, abs(b)) for a, b in zip(got, expected))
    status = "ok" if worst <= 1e-4 else "layer losses differ"
    return {"status": status, "class": type(model).__name__, "layers": L, "max_rel_diff": worst}


def _check_into(queue, model_type: str) -> None:
    try:
        queue.put(check_model_type(model_type))
    except Exception as error:  # noqa: BLE001
        queue.put({"status": "check failed", "error": traceback.format_exception_only(error)[-1][:300]})


def _isolated(model_type: str, timeout: float = 90.0) -> dict:
    """:func:`check_model_type` in a forked process: a model that crashes the interpreter is recorded, not fatal."""
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    process = context.Process(target=_check_into, args=(queue, model_type))
    process.start()
    process.join(timeout)
    if process.is_alive():
        process.kill()
        return {"status": f"check did not finish in {timeout:.0f} s"}
    if queue.empty():
        return {"status": f"the model crashed the process (exit code {process.exitcode})"}
    return queue.get()


def main(argv: list[str] | None = None) -> None:
    from transformers import __version__
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_types", nargs="*", help="default: every causal-LM model type (written to the results)")
    parser.add_argument("--update", action="store_true", help="merge the given types' results into the results file")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    types = args.model_types or sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES)
    results = {}
    for model_type in types:
        results[model_type] = _isolated(model_type)
        print(f"{model_type:28s} {results[model_type]['status']}", flush=True)
    ok = sum(r["status"] == "ok" for r in results.values())
    print(f"{ok} of {len(results)} causal-LM classes: every layer's loss equals the truncated model's")
    if args.model_types and args.update:
        with open(OUTPUT, encoding="utf-8") as f:
            results = {**json.load(f)["models"], **results}
    if not args.model_types or args.update:
        ok = sum(r["status"] == "ok" for r in results.values())
        with open(OUTPUT, "w", encoding="utf-8") as f:
            json.dump({"transformers": __version__, "ok": ok, "models": results}, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"written: {OUTPUT} ({ok} of {len(results)} ok)")


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    main()
