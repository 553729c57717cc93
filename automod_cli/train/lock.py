"""One run directory, one trainer: ``RUN/train.lock``.

Two trainers on the same run directory would write the same state file and log, and the run would be
silently mixed. The lock is an advisory ``flock`` on ``RUN/train.lock``, which holds who took it (PID,
host, start time, command) for the refusal message. The kernel drops a ``flock`` when its process dies,
however it dies (SIGKILL included), so a lock file left by a killed trainer is recognised as stale
(the file is there, nobody holds it) and taken over with a note. The file is removed on every exit path
of the trainer. Ranks of one torchrun job share the lock: rank 0 takes it for the job (see
``Trainer.run``).

Without ``fcntl`` (Windows) the lock falls back to the file alone: a lock whose PID is no longer
running on this host is stale.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
from pathlib import Path

from ..errors import UserError

LOCK_NAME = "train.lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


class RunDirectoryBusy(UserError):
    """Another trainer holds the run directory."""


def _describe(info: dict) -> str:
    return (f"PID {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
            + (f" ({info['processes']} processes)" if info.get("processes", 1) > 1 else ""))


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}


def _pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


class RunLock:
    """``acquire()`` takes the lock of ``run_dir`` (creating the folder) or raises ``RunDirectoryBusy``;
    it returns a note when it took over a stale lock. ``release()`` removes it; safe to call twice."""

    def __init__(self, run_dir: str | Path, command: str | None = None, processes: int = 1):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.info = {"pid": os.getpid(), "host": socket.gethostname(),
                     "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                     "command": command, "processes": processes}
        self._fd: int | None = None

    def _busy(self, holder: dict) -> RunDirectoryBusy:
        return RunDirectoryBusy(f"another trainer is using this run directory ({_describe(holder)}; lock "
                                f"{self.path.name}); wait for it to end or stop it, or use another --out",
                                self.run_dir)

    def acquire(self) -> str | None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            return self._acquire_without_flock()
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise self._busy(_read(self.path)) from None
            # A holder that was just releasing may have removed the file we opened: lock the one at the path.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            break
        previous = _read(self.path)
        self._fd = fd
        self._write(fd)
        return self._stale_note(previous)

    def _acquire_without_flock(self) -> str | None:
        previous: dict = {}
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                break
            except FileExistsError:
                previous = _read(self.path)
                pid = previous.get("pid")
                if previous.get("host") != socket.gethostname() or not isinstance(pid, int) or _pid_running(pid):
                    raise self._busy(previous) from None
                self.path.unlink(missing_ok=True)
        self._fd = fd
        self._write(fd)
        return self._stale_note(previous)

    def _stale_note(self, previous: dict) -> str | None:
        if not previous:
            return None
        return (f"{self.run_dir}: took over the lock left by a trainer that is no longer running "
                f"({_describe(previous)})")

    def _write(self, fd: int) -> None:
        data = (json.dumps(self.info, sort_keys=True) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            if os.stat(self.path).st_ino == os.fstat(fd).st_ino:
                self.path.unlink()
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)  # (closing drops the flock)

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
