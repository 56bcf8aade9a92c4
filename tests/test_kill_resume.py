"""A training run killed with SIGKILL after a checkpoint resumes from it and ends where an uninterrupted run does."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).parent / "distributed" / "train_tiny.py"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
# 8 steps, the layers measured on every 4th (global_step 0 and 4), a checkpoint every 2 steps; the implicit resilient
# dual step with η_d 0.5 > β = 1/3
RUN = ["4", "--max_steps", "8", "--layer_loss_interval", "4", "--save_steps", "2", "--resilience_coef", "auto"]


def _complete(checkpoint: Path) -> bool:
    """Written to the end: the trainer state is saved after the weights, optimizer and duals."""
    return all((checkpoint / name).is_file() for name in ("trainer_state.json", "dual_variables.pt"))


def _run(out: Path, *extra: str) -> None:
    result = subprocess.run([sys.executable, str(SCRIPT), str(out), *RUN, *extra], capture_output=True, text=True,
                            env=ENV, timeout=300)  # fmt: skip
    assert result.returncode == 0, result.stderr[-4000:]


@pytest.mark.parametrize("kill_after", [2, 4], ids=["between-measured-steps", "after-a-measured-step"])
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, kill_after):
    full, killed = tmp_path / "full", tmp_path / "killed"
    full.mkdir(), killed.mkdir()
    _run(full)

    process = subprocess.Popen([sys.executable, str(SCRIPT), str(killed), *RUN, "--step_sleep", "0.5"],
                               env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    checkpoint = killed / "out" / f"checkpoint-{kill_after}"
    deadline = time.monotonic() + 240
    while not _complete(checkpoint):
        assert process.poll() is None, f"the run ended before checkpoint-{kill_after}: {process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint in time"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert not (killed / "rank0.pt").exists()  # it did not finish
    done = sorted(int(p.name.split("-")[1]) for p in (killed / "out").glob("checkpoint-*") if _complete(p))
    assert done and done[-1] < 8
    _run(killed, "--resume", str(killed / "out" / f"checkpoint-{done[-1]}"))

    a = torch.load(full / "rank0.pt", weights_only=False)
    b = torch.load(killed / "rank0.pt", weights_only=False)
    assert torch.all(a["duals"] > 0)
    assert torch.allclose(a["duals"], b["duals"], atol=1e-6)
    assert torch.allclose(a["weights"], b["weights"], atol=1e-6)
