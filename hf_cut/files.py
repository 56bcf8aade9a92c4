"""Results files written whole or not at all, and merged by one writer at a time.

:func:`atomic_write` writes a temporary file beside the target and moves it into place with ``os.replace`` (atomic on
POSIX and Windows): a process killed mid-write leaves the previous file intact, never a truncated one. :func:`locked`
serialises read-modify-write merges of a file several processes share (``filelock``, a lock file beside it).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any

__all__ = ["atomic_write", "locked", "save_figure", "write_json"]


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **open_kwargs: Any) -> Iterator[IO]:
    """``open(path, mode)`` whose content replaces ``path`` only when the block ends without an exception."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_write: mode must be 'w' or 'wb', got {mode!r}.")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if mode == "w":
        open_kwargs.setdefault("encoding", "utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; a results file is read by others
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def write_json(path: str | os.PathLike, obj: Any, **dump_kwargs: Any) -> str:
    """``json.dump(obj)`` into ``path`` atomically; returns the path."""
    with atomic_write(path) as f:
        json.dump(obj, f, **dump_kwargs)
    return os.fspath(path)


def save_figure(fig, path: str | os.PathLike, **savefig_kwargs: Any) -> str:
    """``fig.savefig`` into ``path`` atomically (its folder made), in ``format`` or else the format its extension names
    (PNG without one), as matplotlib reads it from a path; returns the path."""
    path = os.fspath(path)
    savefig_kwargs.setdefault("format", os.path.splitext(path)[1].lstrip(".").lower() or "png")
    with atomic_write(path, "wb") as f:
        fig.savefig(f, **savefig_kwargs)
    return path


def locked(path: str | os.PathLike, timeout: float = 600.0):
    """A lock on ``path`` shared by every process (``path.lock`` beside it): hold it across a read-modify-write."""
    from filelock import FileLock

    return FileLock(f"{os.fspath(path)}.lock", timeout=timeout)
