"""Atomic file writes: write to a temporary file in the target folder, fsync, then rename.

A crash (or SIGKILL) in the middle of a write leaves either the old file or the new one, never a
half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import UserError


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    With ``overwrite=False`` an existing ``path`` is an error (checked before and after writing).
    """
    path = Path(path)
    if not overwrite and path.exists():
        raise UserError("exists already (use --overwrite to replace it)", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give the result the permissions a plain open() would have.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)
        if not overwrite and path.exists():
            raise UserError("exists already (use --overwrite to replace it)", path)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def write_atomic(path: str | Path, writer: Callable[[Path], None], overwrite: bool = True) -> Path:
    """Call ``writer(tmp_path)`` and move the result to ``path`` atomically."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        writer(tmp)
    return Path(path)


def write_text_atomic(path: str | Path, text: str, overwrite: bool = True) -> Path:
    return write_atomic(path, lambda p: p.write_text(text, encoding="utf-8"), overwrite=overwrite)


def write_bytes_atomic(path: str | Path, data: bytes, overwrite: bool = True) -> Path:
    return write_atomic(path, lambda p: p.write_bytes(data), overwrite=overwrite)
