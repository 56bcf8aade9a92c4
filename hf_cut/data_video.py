"""Deprecated alias of :mod:`hf_cut.data.video`, where this module moved: importing it warns (`FutureWarning`), and
the alias goes in the release after the one that moved it (the compatibility rule of the README)."""

import warnings

from .data import video as _moved
from .data.video import *  # noqa: F403
from .data.video import __all__  # noqa: F401

warnings.warn(
    "`hf_cut.data_video` moved to `hf_cut.data.video`; import it from there (the old name goes in the next release).",
    FutureWarning,
    stacklevel=2,
)


def __getattr__(name: str):
    return getattr(_moved, name)
