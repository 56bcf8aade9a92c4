"""hf-cut: fine-tune Hugging Face transformers under layerwise descent constraints (arXiv 2601.17257).

The public names load on first use (PEP 562): ``import hf_cut`` and the ``hf-cut`` command's argument checks import
neither torch nor transformers, so a refused command line answers at once.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # what type checkers and IDEs see (the redundant aliases mark the names as re-exported)
    from .config import ConstrainedSFTConfig as ConstrainedSFTConfig
    from .config import ConstrainedTrainingArguments as ConstrainedTrainingArguments
    from .config import ConstraintArguments as ConstraintArguments
    from .duals import DualVariables as DualVariables
    from .noise import EmbeddingNoise as EmbeddingNoise
    from .trainer import ConstrainedSFTTrainer as ConstrainedSFTTrainer
    from .trainer import ConstrainedTrainer as ConstrainedTrainer

# public name -> the module that defines it
_PUBLIC = {
    "ConstrainedSFTConfig": "config",
    "ConstrainedSFTTrainer": "trainer",
    "ConstrainedTrainer": "trainer",
    "ConstrainedTrainingArguments": "config",
    "ConstraintArguments": "config",
    "DualVariables": "duals",
    "EmbeddingNoise": "noise",
}
__all__ = [
    "ConstrainedSFTConfig",
    "ConstrainedSFTTrainer",
    "ConstrainedTrainer",
    "ConstrainedTrainingArguments",
    "ConstraintArguments",
    "DualVariables",
    "EmbeddingNoise",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        try:  # a submodule: `hf_cut.duals` after a bare `import hf_cut`, as when the package imported them all
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as err:
            if err.name != f"{__name__}.{name}":
                raise
        raise AttributeError(f"module 'hf_cut' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_PUBLIC[name]}", __name__), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
