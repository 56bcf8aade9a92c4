"""Deprecated alias of :mod:`hf_cut.data.classification`, where this module moved: importing it warns (`FutureWarning`), and
the alias goes in the release after the one that moved it (the compatibility rule of the README)."""

import warnings

from .data import classification as _moved
from .data.classification import *  # noqa: F403
from .data.classification import __all__  # noqa: F401

warnings.warn(
    "`hf_cut.data_classification` moved to `hf_cut.data.classification`; import it from there (the old name goes in the next release).",
    FutureWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
