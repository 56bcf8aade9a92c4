"""Checks the command lines share, run before anything is loaded."""

from __future__ import annotations

__all__ = ["check_sweep_paths"]


def check_sweep_paths(paths, name: str = "sweeps") -> None:
    """``ValueError`` naming the argument ``name`` for a path that is neither a sweep file nor a folder holding one
    (a command line's parser refuses it in one line, before anything is loaded)."""
    from ..evaluation.report import JSON_NAME, sweep_file

    for path in paths:
        try:
            sweep_file(path)
        except ValueError:
            raise ValueError(f"argument {name}: {path!r} is neither an {JSON_NAME} file nor a folder holding one "
                             "(hf-cut sweep writes it).") from None  # fmt: skip
