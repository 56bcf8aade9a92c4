"""Deprecated alias of :mod:`hf_cut.data.classification`, where this module moved: importing it warns (`FutureWarning`), and
the alias goes in the release after the one that moved it (the compatibility rule of the README)."""

from .data import _moved_module

__all__, __getattr__ = _moved_module("data_classification", "classification")
