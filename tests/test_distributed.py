"""Two data-parallel CPU processes (gloo, torchrun) against one process over the same global batch."""

import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import need_installed

SCRIPT = Path(__file__).parent / "distributed" / "train_tiny.py"


def _run(cmd, tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, cwd=tmp_path)


def _check(result):
    assert result.returncode == 0, f"stdout:\n{result.stdout[-2000:]}\nstderr:\n{result.stderr[-4000:]}"


def _torchrun(args, tmp_path, attempts=3):
    """2 ranks of the training script under torchrun on a free port."""
    _torchrun_script(SCRIPT, args, tmp_path, attempts)


def _torchrun_script(script, args, tmp_path, attempts=3):
    """2 ranks under torchrun on a free port; a port taken between the probe and the bind is retried."""
    for _ in range(attempts):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
        result = _run([*cmd, str(script), *args], tmp_path)
        if result.returncode == 0 or "address already in use" not in result.stderr.lower():
            break
    _check(result)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
    """The references: one process, the global batch of 4, 4 steps, run once per resilience setting and module."""
    runs: dict[str, dict] = {}

    def run(resilience: str = "none") -> dict:
        if resilience not in runs:
            out = tmp_path_factory.mktemp("one")
            _check(_run([sys.executable, str(SCRIPT), str(out), "4", "--resilience_coef", resilience], out))
            runs[resilience] = torch.load(out / "rank0.pt", weights_only=True)
        return runs[resilience]

    return run


@pytest.fixture(scope="module")
def one_process(one_process_runs):
    """The reference with hard constraints (the script's default)."""
    return one_process_runs("none")


@pytest.mark.parametrize("resilience", ["none", "auto"], ids=["hard", "resilient-implicit"])
def test_two_ranks_match_one_process(tmp_path, one_process_runs, resilience):
    """Hard constraints, and the implicit resilient step with η_d 0.5 > β = 1/3 (refused by an earlier release)."""
    _torchrun([str(tmp_path), "2", "--resilience_coef", resilience], tmp_path)
    single = one_process_runs(resilience)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert torch.all(single["duals"] > 0)
    assert torch.equal(rank0["duals"], rank1["duals"])  # every rank holds the same λ
    assert torch.equal(rank0["weights"], rank1["weights"])
    assert torch.allclose(rank0["duals"], single["duals"], atol=1e-5)
    assert torch.allclose(rank0["weights"], single["weights"], atol=1e-5)
    # the logged layer losses weigh each rank's means by its tokens, as the duals do: equal to one process's
    assert torch.allclose(rank0["logged_layer_losses"], single["logged_layer_losses"], atol=1e-5)


def test_two_ranks_resume_with_their_duals(tmp_path):
    """Both ranks save at step 2 (the duals in the checkpoint) and a new 2-rank run resumed there ends where an
    uninterrupted one does."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    full.mkdir(), resumed.mkdir()
    resilient = ["--resilience_coef", "auto"]  # the implicit step, η_d 0.5 > β = 1/3
    _torchrun([str(full), "2", "--save_steps", "2", *resilient], tmp_path)
    checkpoint = full / "out" / "checkpoint-2"
    saved = torch.load(checkpoint / "dual_variables.pt", weights_only=True)
    assert torch.all(saved["multipliers"] > 0)
    _torchrun([str(resumed), "2", "--resume", str(checkpoint), *resilient], tmp_path)
    _assert_resumed_ends_where_uninterrupted_did(full, resumed)


def _assert_resumed_ends_where_uninterrupted_did(full, resumed) -> None:
    for rank in (0, 1):
        a = torch.load(full / f"rank{rank}.pt", weights_only=True)
        b = torch.load(resumed / f"rank{rank}.pt", weights_only=True)
        assert torch.allclose(a["duals"], b["duals"], atol=1e-6)
        assert torch.allclose(a["weights"], b["weights"], atol=1e-6)


@pytest.mark.parametrize("engine", ["zero3", "fsdp2"])
def test_trainer_under_a_sharded_engine_matches_one_process(tmp_path, one_process, engine):
    """The Trainer under DeepSpeed ZeRO-3 and under FSDP2, 2 ranks of 2 examples against one process of 4: each rank
    holds about half of every parameter (the LM head included); duals, weights and logged layer losses match one
    process; the checkpoint at step 2 holds the duals and a run resumed there ends where the uninterrupted one does."""
    if engine == "zero3":
        need_installed(importlib.util.find_spec("deepspeed") is not None, "deepspeed")  # the `dev` extra
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    full.mkdir(), resumed.mkdir()
    _torchrun([str(full), "2", "--engine", engine, "--save_steps", "2"], tmp_path)
    rank0 = torch.load(full / "rank0.pt", weights_only=True)
    rank1 = torch.load(full / "rank1.pt", weights_only=True)
    total = one_process["weights"].numel()
    assert one_process["local_numel"] == total
    for result in (rank0, rank1):  # sharded, not replicated: ~half each (FSDP2 pads uneven dimensions)
        assert result["local_numel"] <= 0.6 * total
    assert torch.equal(rank0["duals"], rank1["duals"]) and torch.equal(rank0["weights"], rank1["weights"])
    assert torch.all(one_process["duals"] > 0)
    assert torch.allclose(rank0["duals"], one_process["duals"], atol=1e-5)
    assert torch.allclose(rank0["weights"], one_process["weights"], atol=1e-5)
    assert torch.allclose(rank0["logged_layer_losses"], one_process["logged_layer_losses"], atol=1e-5)

    checkpoint = full / "out" / "checkpoint-2"
    saved = torch.load(checkpoint / "dual_variables.pt", weights_only=True)
    assert torch.all(saved["multipliers"] > 0) and not torch.allclose(saved["multipliers"].float(), rank0["duals"])
    _torchrun([str(resumed), "2", "--engine", engine, "--resume", str(checkpoint)], tmp_path)
    _assert_resumed_ends_where_uninterrupted_did(full, resumed)


def test_two_ranks_agree_when_one_rank_sees_a_nan(tmp_path):
    """Rank 0's micro-batch of the last step is poisoned (NaN from decoder layer 1 on; the last, since its NaN
    gradient reaches every rank's weights): it is left out, rank 1's counts, and both ranks take the same dual steps —
    the trajectory recomputed by hand from what each rank measured."""
    _torchrun([str(tmp_path), "2", "--poison_rank", "0", "--poison_call", "4"], tmp_path)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)
    assert (rank0["skipped"], rank1["skipped"]) == (1, 0)
    assert torch.equal(rank0["duals"], rank1["duals"]) and torch.isfinite(rank0["duals"]).all()
    lam = torch.zeros(3, dtype=torch.float64)
    for (l0, n0), (l1, n1) in zip(rank0["seen"], rank1["seen"]):  # one micro-batch per rank and step
        parts = [(l, n) for l, n in ((l0, n0), (l1, n1)) if torch.isfinite(l).all()]
        mean = sum(l * n for l, n in parts) / sum(n for _, n in parts)
        lam = torch.clamp(lam + 0.5 * (mean[1:] - 0.9 * mean[:-1]), min=0)
    assert not torch.isfinite(rank0["seen"][3][0]).all() and len(rank0["seen"]) == 4
    assert torch.allclose(rank0["duals"].double(), lam, atol=1e-5)


def test_readout_under_fsdp2_with_the_head_as_its_own_unit(tmp_path):
    """FSDP2 (`fully_shard`) on each layer, the head and the root: each rank's layer losses are its own half's, and
    the head's gradient after FSDP's reduction is the one-process gradient of the mean objective (without averaging
    the head's gathered weight's gradient across ranks, each rank kept only its own half's: error ~0.3)."""
    _torchrun_script(Path(__file__).parent / "distributed" / "fsdp_head.py", [str(tmp_path)], tmp_path)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for rank, result in enumerate((rank0, rank1)):
        assert torch.allclose(result["losses"], rank0["reference_losses"][rank], atol=1e-5)
    assert torch.allclose(rank0["head_grad"], rank1["head_grad"])
    assert torch.allclose(rank0["head_grad"], rank0["reference_head_grad"], atol=1e-6)
