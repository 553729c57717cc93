"""Atomic file writes: write to a temporary file in the target folder, fsync, then rename.

A crash (or SIGKILL) in the middle of a write leaves either the old file or the new one, never a
half-written file under the real name. A write that fails (a full disk, no permission, a read-only
file system) is one ``WriteError`` naming the file and the cause; the temporary file is removed and a
previous file of that name is left as it was.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from ..errors import UserError, WriteError

# Errors of the file system, as opposed to the other OSErrors a writer may raise (a network error while
# a download streams into the file is the caller's to report).
FILESYSTEM_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EFBIG, errno.EACCES, errno.EPERM,
                     errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.ENAMETOOLONG, errno.EEXIST, errno.EMFILE,
                     errno.ENFILE, errno.EXDEV}


def size_text(n: int | None) -> str:
    """A file size for people: '1.2 GB', '35.0 MB', '812 bytes'."""
    if n is None:
        return "?"
    for unit, k in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= k:
            return f"{n / k:.1f} {unit}"
    return f"{n} bytes"


def write_error(path: Path, error: OSError, existed: bool) -> WriteError:
    """One line: the file, the cause, and what is left on disk."""
    cause = error.strerror or str(error) or type(error).__name__
    kept = "the previous file is kept" if existed else "no partial file was left"
    return WriteError(f"could not be written: {cause} ({kept})", path, errno=error.errno)


def _make_folder(folder: Path, target: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise WriteError(f"cannot create the folder {folder}: a file of that name is in the way", target) from None
    except OSError as e:
        raise write_error(target, e, False) from None


@contextlib.contextmanager
def atomic_path(path: str | Path, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    With ``overwrite=False`` an existing ``path`` is an error (checked before and after writing).
    """
    path = Path(path)
    if path.is_dir():
        raise UserError("is a folder; give a file name", path)
    if not overwrite and path.exists():
        raise UserError("exists already (use --overwrite to replace it)", path)
    existed = path.exists()
    _make_folder(path.parent, path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + path.suffix, dir=path.parent)
    except OSError as e:
        raise write_error(path, e, existed) from None
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
    except OSError as e:
        if e.errno not in FILESYSTEM_ERRNOS:
            raise
        raise write_error(path, e, existed) from None
    finally:
        with contextlib.suppress(OSError):
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
