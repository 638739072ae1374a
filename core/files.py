"""Atomic file writes: a crash mid-write never leaves a half-written file that looks complete."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "check_writable"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)  # mkstemp creates 0600; give the file the permissions a plain open() would
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise ``OSError`` with a clear message if ``path`` cannot be created or replaced."""
    target = Path(path)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise OSError(f"directory {str(parent)!r} does not exist")
    if target.is_dir():
        raise OSError(f"{str(target)!r} is a directory")
    if not os.access(parent, os.W_OK):
        raise OSError(f"directory {str(parent)!r} is not writable")
