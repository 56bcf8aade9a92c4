"""Checks the command lines share, run before anything is loaded."""

from __future__ import annotations

__all__ = ["check_sweep_paths"]


def check_sweep_paths(parser, paths) -> None:
    """``parser.error`` (a usage error, before anything is loaded) for a path that is neither a sweep file nor a folder
    holding one."""
    from ..evaluation.report import sweep_file

    for path in paths:
        try:
            sweep_file(path)
        except ValueError as err:
            parser.error(str(err))
