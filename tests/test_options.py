"""The constraint options as users spell them (YAML, the command line, Python), against values written out by hand."""

from __future__ import annotations

import math

import pytest

from hf_cut.options import _optional_number, constrained_layer_mask, normalise_resilience, resolve_resilience


@pytest.mark.parametrize("given,expected", [
    (None, None), ("auto", "auto"), (" AUTO ", "auto"), ("none", None), ("Null", None), ("hard", None), ("", None),
    (math.inf, None), ("inf", None), (2, 2.0), (0.5, 0.5), ("0.25", 0.25), (-math.inf, -math.inf), ("-inf", -math.inf),
])  # fmt: skip
def test_resilience_spellings(given, expected):
    value = normalise_resilience(given)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("given", ["soft", "1/2", "auto-ish"])
def test_resilience_refused_by_name(given):
    with pytest.raises(ValueError, match=r"^`resilience_coef` must be 'auto', None \(hard constraints\) or a number "
                                         rf"> 0, got '{given}'\.$"):  # fmt: skip
        normalise_resilience(given)


def test_resilience_resolved_for_the_depth():
    assert resolve_resilience("auto", 8) == 0.125 and resolve_resilience("auto", 3) == 1 / 3
    assert resolve_resilience(0.7, 8) == 0.7 and resolve_resilience(None, 8) is None


@pytest.mark.parametrize("spec,num_layers,chosen", [
    ("all", 4, {1, 2, 3, 4}),
    (" ALL ", 2, {1, 2}),
    ("upper_half", 30, set(range(16, 31))),  # the docstring's example: L = 30 -> 16 … 30
    ("upper_half", 5, {3, 4, 5}),  # L // 2 = 2
    ("upper_half", 1, {1}),
    ("16-30", 30, set(range(16, 31))),
    ("2,4,6-8", 8, {2, 4, 6, 7, 8}),
    ("1-1", 3, {1}),
    ("3", 3, {3}),
    ("1 - 2, 4", 4, {1, 2, 4}),
])  # fmt: skip
def test_constrained_layers(spec, num_layers, chosen):
    assert constrained_layer_mask(spec, num_layers) == [layer in chosen for layer in range(1, num_layers + 1)]


@pytest.mark.parametrize("spec,message", [
    ("0-2", "names layers outside 1 … 4"),
    ("2-5", "names layers outside 1 … 4"),
    ("3-2", "whose end is below its start"),
    ("5", "names layers outside 1 … 4"),
    ("lower_half", "must be 'all', 'upper_half' or layers 1 … L"),
    ("1-", "must be 'all', 'upper_half' or layers 1 … L"),
    ("a-3", "must be 'all', 'upper_half' or layers 1 … L"),
    ("2-b", "must be 'all', 'upper_half' or layers 1 … L"),
    ("1,,2", "must be 'all', 'upper_half' or layers 1 … L"),
])  # fmt: skip
def test_constrained_layers_refused_by_name(spec, message):
    with pytest.raises(ValueError, match=rf"^`constrained_layers` .*{message}"):
        constrained_layer_mask(spec, 4)


@pytest.mark.parametrize("given,expected", [
    (None, None), (3, 3), (0.5, 0.5), ("none", None), (" NULL ", None), ("", None), ("1e-3", 0.001), ("2", 2.0),
])  # fmt: skip
def test_optional_numbers(given, expected):
    value = _optional_number(given, "dual_max")
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("given", ["big", True])
def test_optional_number_refused_by_name(given):
    with pytest.raises(ValueError, match=rf"^`dual_max` must be None or a number, got {given!r}\.$"):
        _optional_number(given, "dual_max")


def test_constrained_layers_out_of_range_message():
    message = ("`constrained_layers` ('3-2') names layers outside 1 … 4 (the model's L) or a range whose end is below "
               "its start.")  # fmt: skip
    with pytest.raises(ValueError) as error:
        constrained_layer_mask("3-2", 4)
    assert str(error.value) == message
