"""The readout under FSDP2 with the LM head as its own unit, against one process (run under torchrun, 2 ranks, gloo).

    torchrun --nproc_per_node 2 tests/distributed/fsdp_head.py OUT_DIR

Every rank builds the same tiny Llama, shards each decoder layer, the head and the root with ``fully_shard`` on a
CPU mesh, runs the layerwise readout on its own half of a batch and backpropagates ``Σ_l ℓ_l``; rank 0 also computes
the reference in one unsharded process (the mean of the two halves' objectives). Saved: both ranks' layer losses, the
head's full gradient after FSDP's reduction, and the reference values.
"""

import os
import sys

import torch
import torch.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hf_cut.readout import LayerReadoutRequest, add_layer_readout  # noqa: E402
from tests.conftest import tiny_causal_lm  # noqa: E402
from tests.distributed import exit_without_teardown  # noqa: E402

VOCAB = 64


def halves():
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, VOCAB, (4, 10), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    return [(ids[:2], labels[:2]), (ids[2:], labels[2:])]


def objective(model, ids, labels):
    out = model(input_ids=ids, labels=labels, layer_readout=LayerReadoutRequest())
    return out.layer_losses, out.layer_losses.sum()


def main(out_dir: str) -> None:
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    model = tiny_causal_lm(vocab_size=VOCAB, num_layers=2)
    for layer in model.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(model.lm_head, mesh=mesh)  # the head as its own unit: the readout reads its sharded weight
    fully_shard(model, mesh=mesh)
    add_layer_readout(model)
    ids, labels = halves()[rank]
    losses, total = objective(model, ids, labels)
    total.backward()
    head_grad = model.lm_head.weight.grad.full_tensor()
    result = {"losses": losses.detach(), "head_grad": head_grad}
    if rank == 0:
        reference = tiny_causal_lm(vocab_size=VOCAB, num_layers=2)
        add_layer_readout(reference)
        parts = [objective(reference, i, y) for i, y in halves()]
        (sum(t for _, t in parts) / len(parts)).backward()
        result["reference_losses"] = [l.detach() for l, _ in parts]
        result["reference_head_grad"] = reference.lm_head.weight.grad
    torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    exit_without_teardown()  # the FSDP mesh still holds the process group
