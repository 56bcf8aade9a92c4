"""The part of ψ before the head: the modules a causal LM's own forward applies between its last layer and its logits.

No list of attribute names: the modules are read off the model's own forward. Forward hooks on every module of the
backbone outside its decoder layers record the order in which they finish; those that finish after the last decoder
layer, outermost first, are what the model applies to the last layer's output before its head (Llama's ``norm``,
GPT-2's ``ln_f``, LFM2's ``embedding_norm``, OPT's ``final_layer_norm`` then ``project_out``; nothing for a model
without a final norm). The readout applies them, in that order, to every intermediate hidden state.

:func:`find_final_modules` runs a two-token probe forward (without grad, its random draws undone) when the weights
are in memory; for weights partitioned at load time (DeepSpeed ZeRO-3's ``zero.Init``) the readout records
them during its first forward instead (:class:`FinalModules`).
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

__all__ = ["FinalModules", "decoder_layers", "find_final_modules"]


def _size(param: torch.Tensor) -> int:
    return getattr(param, "ds_numel", param.numel())  # ZeRO-3 partitioned parameters hold no elements locally


def decoder_layers(backbone: nn.Module, num_layers: int) -> nn.ModuleList:
    """The backbone's list of its ``num_layers`` decoder layers (the largest ``nn.ModuleList`` of that length)."""
    lists = [m for m in backbone.modules() if isinstance(m, nn.ModuleList) and len(m) == num_layers]
    if not lists:
        raise ValueError(f"Cannot find the {num_layers} decoder layers of {type(backbone).__name__} (no ModuleList of "
                         "that length): the shared readout reads out every layer's hidden state.")  # fmt: skip
    return max(lists, key=lambda m: sum(_size(p) for p in m.parameters()))


def _first_tensor(value):
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], torch.Tensor):
        return value[0]
    return getattr(value, "last_hidden_state", None)


@contextlib.contextmanager
def _recording(backbone: nn.Module, layers: nn.ModuleList):
    """Within the block, the forwards of ``backbone`` are watched; the yielded dict then holds ``"modules"``: the
    outermost modules that finish after ``layers[-1]`` does, called on one tensor of the last layer's output shape
    (the hidden-state path, not a side computation) — unless the last layer never ran."""
    inside = set(layers.modules())
    containers = {m for m in backbone.modules() if any(sub is layers for sub in m.modules())}
    order: list = []  # ("last", shape) or (module, called on one hidden-state-shaped tensor alone)

    def after_last(module, args, output):
        hidden = _first_tensor(output)
        order.append(("last", None if hidden is None else hidden.shape))

    def after(module, args, kwargs, output):
        single = len(args) == 1 and isinstance(args[0], torch.Tensor) and isinstance(output, torch.Tensor)
        single = single and not any(isinstance(v, torch.Tensor) for v in kwargs.values())
        order.append((module, args[0].shape if single else None))

    handles = [layers[-1].register_forward_hook(after_last)]
    for module in backbone.modules():
        if module not in inside and module not in containers:
            handles.append(module.register_forward_hook(after, with_kwargs=True))
    result: dict = {}
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()
    marks = [i for i, (module, _) in enumerate(order) if isinstance(module, str)]
    if marks:
        shape = order[marks[-1]][1]
        after_modules = list(dict.fromkeys(m for m, s in order[marks[-1] + 1 :] if s is not None and s == shape))
        # a module's submodules finish before it: keep the outermost
        result["modules"] = [m for m in after_modules
                             if not any(m is not o and m in set(o.modules()) for o in after_modules)]  # fmt: skip


def _materialised(module: nn.Module) -> bool:
    """Are the weights whole, in memory (not partitioned by ZeRO-3, sharded by FSDP2, or on the meta device)?"""
    return all(p.numel() > 0 and p.device.type != "meta" and not hasattr(p, "full_tensor") for p in module.parameters())


def find_final_modules(backbone: nn.Module, num_layers: int) -> list[nn.Module] | None:
    """The modules ``backbone``'s forward applies after its last decoder layer, in order, from a probe forward of two
    tokens without grad, its random draws undone (``fork_rng``). The probe runs in training mode: in eval mode some
    layers change themselves on a CPU (bitsandbytes repacks its 4-bit weights for inference). ``None`` when the
    probe did not run the last layer (LayerDrop); ``ValueError`` when the probe fails."""
    layers = decoder_layers(backbone, num_layers)
    embeddings = backbone.get_input_embeddings()
    device = embeddings.weight.device if getattr(embeddings, "weight", None) is not None else torch.device("cpu")
    modes = {module: module.training for module in backbone.modules()}
    backbone.train()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), torch.no_grad():
            # without output_hidden_states: transformers installs its recording hooks on the first forward that asks
            # for them, and those must come after any hook a user adds before training (as they did before)
            with _recording(backbone, layers) as result:
                backbone(input_ids=torch.zeros(1, 2, dtype=torch.long, device=device), use_cache=False)
    except Exception as error:  # noqa: BLE001  (any failure of the model's own forward is reported by name)
        raise ValueError(
            f"Cannot find the final norm of {type(backbone).__name__} (the modules its forward applies after its last "
            f"layer): a probe forward of two tokens failed ({type(error).__name__}: {error})."
        ) from error
    finally:
        for module, training in modes.items():
            module.training = training
    return result.get("modules")


class FinalModules:
    """ψ before the head, found once: by a probe at patch time, or (weights not in memory then) recorded during the
    readout's first forward. Not an ``nn.Module``: the modules stay registered where the model has them."""

    def __init__(self, backbone: nn.Module, num_layers: int) -> None:
        self.num_layers = num_layers
        self.layout_checked = False
        self.first_layer_output: list[torch.Tensor] = []
        self.modules: list[nn.Module] | None = None
        if _materialised(backbone):  # else (or when the probe skipped the last layer) recorded in the first forward
            self.modules = find_final_modules(backbone, num_layers)

    @contextlib.contextmanager
    def recorded(self, backbone: nn.Module):
        """Around the backbone's forward: records the modules if they are not known yet, and the first layer's output
        until :meth:`check_hidden_states` has seen it."""
        first: list[torch.Tensor] = []
        handle = None
        if not self.layout_checked:
            layer = decoder_layers(backbone, self.num_layers)[0]
            handle = layer.register_forward_hook(lambda m, a, output: first.append(_first_tensor(output)))
        self.first_layer_output = first
        try:
            if self.modules is not None:
                yield
                return
            with _recording(backbone, decoder_layers(backbone, self.num_layers)) as result:
                yield
            self.modules = result.get("modules")  # None while the last layer has not run (LayerDrop): again
        finally:
            if handle is not None:
                handle.remove()

    def check_hidden_states(self, states) -> None:
        """Once: ``ValueError`` unless the backbone's hidden states are the input embeddings, then each layer's output
        (Mamba's leave out the embeddings and repeat the last state: read out, they would be the wrong layers)."""
        if self.layout_checked or not self.first_layer_output:
            return
        first = self.first_layer_output[0]
        if len(states) != self.num_layers + 1 or first is None or not torch.equal(states[1], first):
            raise ValueError(
                "the model's hidden states are not the input embeddings and then each layer's output (the readout "
                "reads h_0 … h_L from them): this architecture cannot be read out."
            )
        self.layout_checked = True

    def __call__(self, hidden: torch.Tensor) -> torch.Tensor:
        for module in self.modules:
            hidden = module(hidden)
        return hidden
