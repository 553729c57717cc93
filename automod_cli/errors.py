"""Errors a user can act on.

Anything raised as ``UserError`` reaches the terminal as one line (``automod: error: ...``) and a
non-zero exit status; every other exception is a bug and shows its traceback only with ``--debug``.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem with the user's input or environment, reported as one line."""

    exit_code = 2

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InputError(UserError):
    """One input file is unusable (missing, unreadable, truncated, not an image, wrong shape...)."""


class ModelFileError(UserError):
    """A model file that is not a model, is corrupt, or belongs to another format version."""


class WriteError(UserError):
    """An output could not be written (full disk, no permission, read-only file system...).

    The message names the file and the cause; the previous file under that name, if any, is kept and
    no temporary file is left behind (see ``io/atomic.py``). ``errno`` is the operating system's cause
    (``errno.ENOSPC`` for a full disk), None when there is none.
    """

    def __init__(self, message: str, path: str | Path | None = None, errno: int | None = None):
        super().__init__(message, path)
        self.errno = errno


class MissingWeightsError(UserError):
    """Pretrained network weights are neither on disk nor downloadable."""

    exit_code = 3
