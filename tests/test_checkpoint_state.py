"""The problem's state in checkpoints, through public mechanisms only: the callback's ExportableState in
``trainer_state.json`` (read back on resume, also when transformers re-creates the callback), and checkpoints of
hf-cut 0.1 — whose state is only the ``dual_variables.pt`` file beside the weights — still resume exactly."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from hf_cut.constraint_callback import DUALS_NAME
from tests.conftest import tiny_trainer

SCRIPT = Path(__file__).parent / "distributed" / "train_tiny.py"
LEGACY = Path(__file__).parent / "assets" / "checkpoint_hf_cut_0_1" / "checkpoint-2"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
# what wrote the committed checkpoint (hf-cut 0.1, `python tests/distributed/train_tiny.py OUT 4 --max_steps 4
# --save_steps 2 --resilience_coef auto`, checkpoint-2 kept without training_args.bin)
RUN = ["4", "--max_steps", "4", "--resilience_coef", "auto"]


def _run(out: Path, *extra: str) -> dict:
    out.mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), *RUN, *extra], capture_output=True, text=True,
                            env=ENV, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]
    return torch.load(out / "rank0.pt", weights_only=False)


def test_a_checkpoint_of_hf_cut_0_1_resumes_exactly(tmp_path):
    state = json.loads((LEGACY / "trainer_state.json").read_text())
    assert "ConstraintCallback" not in state["stateful_callbacks"]  # the file is the only record of the duals
    saved = torch.load(LEGACY / DUALS_NAME, weights_only=True)
    assert torch.all(saved["multipliers"] > 0)
    checkpoint = tmp_path / "checkpoint-2"
    shutil.copytree(LEGACY, checkpoint)
    full = _run(tmp_path / "full")
    resumed = _run(tmp_path / "resumed", "--resume", str(checkpoint))
    assert torch.all(full["duals"] > 0)
    # restarting λ at 0 instead would end elsewhere: two dual steps of η 0.5 on slacks of about 0.3
    assert torch.allclose(full["duals"], resumed["duals"], atol=1e-6)
    assert torch.allclose(full["weights"], resumed["weights"], atol=1e-6)


def _trainer(tmp_path, tokenizer, dataset, **overrides):
    return tiny_trainer(tmp_path, tokenizer, dataset, max_steps=4, save_strategy="steps", save_steps=2,
                        resilience_coef="auto", **overrides)  # fmt: skip


@pytest.mark.parametrize("restore_callback_states", [False, True], ids=["default", "restore_callback_states"])
def test_resume_reads_the_state_from_trainer_state_json(tmp_path, tokenizer, dataset, restore_callback_states):
    """The duals file is removed from the checkpoint: the resumed run ends where the uninterrupted one does from the
    state in trainer_state.json alone, whether or not transformers re-creates the callback from it."""
    full = _trainer(tmp_path / "full", tokenizer, dataset)
    full.train()
    checkpoint = tmp_path / "full" / "out" / "checkpoint-2"
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    exported = state["stateful_callbacks"]["ConstraintCallback"]["attributes"]["problem_state"]
    in_file = torch.load(checkpoint / DUALS_NAME, weights_only=True)
    assert exported["multipliers"] == in_file["multipliers"].tolist()  # bit for bit through JSON
    assert exported["num_steps"] == 2 and all(value > 0 for value in exported["multipliers"])
    (checkpoint / DUALS_NAME).unlink()

    resumed = _trainer(tmp_path / "resumed", tokenizer, dataset,
                       restore_callback_states_from_checkpoint=restore_callback_states)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.duals.num_steps == 4
    assert torch.equal(resumed.duals.multipliers, full.duals.multipliers)
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_checkpoint_without_any_state_warns_and_restarts_the_duals(tmp_path, tokenizer, dataset):
    full = _trainer(tmp_path / "full", tokenizer, dataset)
    full.train()
    checkpoint = tmp_path / "full" / "out" / "checkpoint-2"
    (checkpoint / DUALS_NAME).unlink()
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    del state["stateful_callbacks"]["ConstraintCallback"]
    (checkpoint / "trainer_state.json").write_text(json.dumps(state))
    resumed = _trainer(tmp_path / "resumed", tokenizer, dataset)
    with pytest.warns(UserWarning, match="restart from `dual_init`"):
        resumed.train(resume_from_checkpoint=str(checkpoint))
    assert resumed.duals.num_steps == 2  # the two steps after the checkpoint only
    assert not torch.allclose(resumed.duals.multipliers, full.duals.multipliers)
    # and its own checkpoint carries the state again (transformers keeps only the callbacks the resumed state names)
    state = json.loads((tmp_path / "resumed" / "out" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["stateful_callbacks"]["ConstraintCallback"]["attributes"]["problem_state"]["num_steps"] == 2
