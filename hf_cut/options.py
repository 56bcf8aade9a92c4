"""The values the constraint options take, parsed and resolved: `resilience_coef` ("auto", a number, hard),
`constrained_layers` (all, upper half, ranges), numbers that may be None. Used by :mod:`hf_cut.config` to validate
and by the trainers once the model's depth L is known."""

from __future__ import annotations

import math

__all__ = ["LAYER_SAMPLING", "constrained_layer_mask", "normalise_resilience", "resolve_resilience"]

LAYER_SAMPLING = ("weighted", "rotation")


def normalise_resilience(value) -> float | str | None:
    """``resilience_coef`` as given (a number, a string from the command line, None) → ``"auto"``, a float, or
    ``None`` for hard constraints (also ``"none"``, ``"null"``, ``"hard"``, ``inf``)."""
    if value is None:
        return None
    if isinstance(value, (int, float)):
        return None if math.isinf(value) and value > 0 else float(value)
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text in ("none", "null", "hard", ""):
        return None
    try:
        number = float(text)
    except ValueError:
        raise ValueError(
            f"`resilience_coef` must be 'auto', None (hard constraints) or a number > 0, got {value!r}."
        ) from None
    return None if math.isinf(number) and number > 0 else number


def resolve_resilience(value, num_layers: int) -> float | None:
    """β for a model of ``num_layers`` layers: ``"auto"`` → 1/L, a number as given, ``None`` (hard) as given. Any
    ``dual_lr > 0`` is stable with it: the resilient dual step is taken implicitly
    (:func:`hf_cut.duals.proximal_dual_step`)."""
    return 1.0 / num_layers if value == "auto" else value


def _parse_layer_spec(spec: str) -> str | list[tuple[int, int]]:
    """``"all"`` / ``"upper_half"``, or inclusive ranges from ``"16-30"``, ``"3,5,7"``, ``"1-4,20-30"``."""
    text = str(spec).strip().lower().replace(" ", "")
    if text in ("all", "upper_half"):
        return text
    ranges = []
    for part in text.split(","):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(
                f"`constrained_layers` must be 'all', 'upper_half' or layers 1 … L as ranges and numbers such as "
                f"'16-30' or '2,4,6-8', got {spec!r}."
            )
        ranges.append((int(low), int(high or low)))
    return ranges


def constrained_layer_mask(spec: str, num_layers: int) -> list[bool]:
    """Which of the constraints ``l = 1 … L`` are enforced, from the ``constrained_layers`` option.

    ``"all"``: every layer; ``"upper_half"``: ``l > L // 2`` (for L = 30, layers 16 … 30); otherwise the listed layers
    (``"16-30"``, ``"2,4,6-8"``), each in 1 … L. Constraint l compares ``ℓ_l`` with ``ℓ_{l−1}``, so ``"16-30"`` asks
    layers 16 … 30 to descend from layer 15's loss on.
    """
    parsed = _parse_layer_spec(spec)
    if parsed == "all":
        return [True] * num_layers
    if parsed == "upper_half":
        return [layer > num_layers // 2 for layer in range(1, num_layers + 1)]
    chosen = set()
    for low, high in parsed:
        if not 1 <= low <= high <= num_layers:
            raise ValueError(
                f"`constrained_layers` ({spec!r}) names layers outside 1 … {num_layers} (the model's L) or a range "
                "whose end is below its start."
            )
        chosen.update(range(low, high + 1))
    return [layer in chosen for layer in range(1, num_layers + 1)]


def _optional_number(value, name: str) -> float | None:
    """A number, or None from None / "none" / "null" (the command line's spelling)."""
    if value is None or isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("none", "null", ""):
        return None
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"`{name}` must be None or a number, got {value!r}.") from None
