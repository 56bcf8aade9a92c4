"""The part of ψ before the head: the modules a causal LM's own forward applies between its last layer and its logits.

No list of attribute names: the modules are read off the model's own forward. Forward hooks on every module of the
backbone outside its decoder layers record the order in which they finish; those that finish after the last decoder
layer, outermost first, are what the model applies to the last layer's output before its head (Llama's ``norm``,
GPT-2's ``ln_f``, LFM2's ``embedding_norm``, OPT's ``final_layer_norm`` then ``project_out``; nothing for a model
without a final norm). The readout applies them, in that order, to every intermediate hidden state.

:func:`find_final_modules` runs a two-token probe forward (in eval mode, without grad: no dropout draw, no graph) when
the weights are in memory; for weights partitioned at load time (DeepSpeed ZeRO-3's ``zero.Init``) the readout records
them during its first forward instead (:class:`FinalModules`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["FinalModules", "decoder_layers", "find_final_modules"]


def decoder_layers(backbone: nn.Module, num_layers: int) -> nn.ModuleList:
    """The backbone's list of its ``num_layers`` decoder layers (the largest ``nn.ModuleList`` of that length)."""
    lists = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if not lists:
        raise ValueError(f"Cannot find the {num_layers} decoder layers of {type(backbone).__name__} (no ModuleList of "
                         "that length): the shared readout reads out every layer's hidden state.")  # fmt: skip
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


@contextlib.contextmanager
def _recording(backbone: nn.Module, layers: nn.ModuleList):
    """Within the block, every forward of ``backbone`` appends to the yielded list the outermost modules that finish
    after ``layers[-1]`` does."""
    inside = set(layers.modules())
    containers = {m for m in backbone.modules() if any(sub is layers for sub in m.modules())}
    order: list[nn.Module | None] = []
    handles = [layers[-1].register_forward_hook(lambda *_: order.append(None))]
    for module in backbone.modules():
        if module not in inside and module not in containers:
            handles.append(module.register_forward_hook(lambda m, *_: order.append(m)))
    found: list[nn.Module] = []
    try:
        yield found
    finally:
        for handle in handles:
            handle.remove()
    if None in order:
        last = len(order) - 1 - order[::-1].index(None)
        after = list(dict.fromkeys(m for m in order[last + 1 :] if m is not None))
        # a module's submodules finish before it: keep the outermost
        found += [m for m in after if not any(m is not other and m in set(other.modules()) for other in after)]


def _materialised(module: nn.Module) -> bool:
    """Are the weights whole, in memory (not partitioned by ZeRO-3, sharded by FSDP2, or on the meta device)?"""
    return all(p.numel() > 0 and p.device.type != "meta" and not hasattr(p, "full_tensor") for p in module.parameters())


def find_final_modules(backbone: nn.Module, num_layers: int) -> list[nn.Module]:
    """The modules ``backbone``'s forward applies after its last decoder layer, in order (a probe forward of two
    tokens). ``ValueError`` when the probe cannot run."""
    layers = decoder_layers(backbone, num_layers)
    embeddings = backbone.get_input_embeddings()
    device = embeddings.weight.device if getattr(embeddings, "weight", None) is not None else "cpu"
    was_training = backbone.training
    backbone.eval()
    try:
        with _recording(backbone, layers) as found, torch.no_grad():
            backbone(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False)
    except Exception as error:  # noqa: BLE001  (any failure of the model's own forward is reported by name)
        raise ValueError(
            f"Cannot find the final norm of {type(backbone).__name__} (the modules its forward applies after its last "
            f"layer): a probe forward of two tokens failed ({type(error).__name__}: {error})."
        ) from error
    finally:
        backbone.train(was_training)
    return found


class FinalModules:
    """ψ before the head, found once: by a probe at patch time, or (weights not in memory then) recorded during the
    readout's first forward. Not an ``nn.Module``: the modules stay registered where the model has them."""

    def __init__(self, backbone: nn.Module, num_layers: int) -> None:
        self.num_layers = num_layers
        self.modules: list[nn.Module] | None = None
        if _materialised(backbone):
            self.modules = find_final_modules(backbone, num_layers)

    @contextlib.contextmanager
    def recorded(self, backbone: nn.Module):
        """Around the backbone's forward: records the modules if they are not known yet."""
        if self.modules is not None:
            yield
            return
        with _recording(backbone, decoder_layers(backbone, self.num_layers)) as found:
            yield
        self.modules = found

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            hidden = module(hidden)
        return hidden
