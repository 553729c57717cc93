"""One run directory, one trainer: the lock refuses a second trainer in one line naming the first, takes
over a lock left by a killed process with a note, and is released on every way out of a run."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from automod_cli.errors import UserError
from automod_cli.train import lock as lockmod
from automod_cli.train.lock import LOCK_NAME, RunDirectoryBusy, RunLock
from automod_cli.train.loop import Interrupted, Trainer
from automod_cli.train.schedule import resolve_config
from conftest import write_random_images

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


def test_a_second_trainer_is_refused_in_one_line(tmp_path):
    first = RunLock(tmp_path / "run", command="automod train data --out run")
    assert first.acquire() is None and (tmp_path / "run" / LOCK_NAME).exists()
    with pytest.raises(RunDirectoryBusy) as e:
        RunLock(tmp_path / "run").acquire()
    message = str(e.value)
    assert "\n" not in message and message.startswith(f"{tmp_path / 'run'}: another trainer is using this run")
    assert f"PID {os.getpid()} on {socket.gethostname()}, started 20" in message
    first.release()
    assert not (tmp_path / "run" / LOCK_NAME).exists()
    second = RunLock(tmp_path / "run")
    assert second.acquire() is None  # a released lock leaves nothing stale behind
    second.release()
    second.release()  # twice is harmless


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_note(tmp_path, monkeypatch):
    run = tmp_path / "run"
    code = ("import os, signal, sys; from automod_cli.train.lock import RunLock; "
            "RunLock(sys.argv[1]).acquire(); print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    p = subprocess.run([sys.executable, "-c", code, str(run)], cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    dead = int(p.stdout.split()[0])
    assert (run / LOCK_NAME).exists()  # nobody removed it
    lock = RunLock(run)
    note = lock.acquire()
    assert note.startswith(f"{run}: took over the lock left by a trainer that is no longer running (PID {dead} on ")
    lock.release()

    # without flock (Windows) the PID decides: a dead one is stale, a live one on this host is not
    monkeypatch.setattr(lockmod, "fcntl", None)
    (run / LOCK_NAME).write_text(f'{{"pid": {dead}, "host": "{socket.gethostname()}", "started": "x"}}')
    fallback = RunLock(run)
    assert f"PID {dead}" in fallback.acquire()
    with pytest.raises(RunDirectoryBusy, match=f"PID {os.getpid()}"):
        RunLock(run).acquire()
    fallback.release()
    assert not (run / LOCK_NAME).exists()


def tiny(**over):
    base = {"resolution": 8, "width": 1 / 64, "latent_dim": 16, "phase_starts": [0, 16], "fade": 16, "duration": 32,
            "batch": 8, "workers": 0, "device": "cpu", "log_every": 16, "grid_every": 10**6,
            "checkpoint_every": 10**6}
    base.update(over)
    return resolve_config("toy32", base)


def test_the_trainer_releases_the_lock_on_every_exit_path(tmp_path):
    data = write_random_images(tmp_path / "data", 8, 8, seed=0)
    run = tmp_path / "run"
    lock_file = run / LOCK_NAME
    # while a run holds it, another trainer on the same directory stops before touching anything
    holder = RunLock(run)
    holder.acquire()
    with pytest.raises(RunDirectoryBusy, match=f"PID {os.getpid()}"):
        Trainer(tiny(), data, run, progress=False).run()
    assert not (run / "config.json").exists()
    holder.release()

    Trainer(tiny(), data, run, progress=False).run()  # finished
    assert (run / "state").exists() and not lock_file.exists()
    with pytest.raises(UserError, match="another configuration"):  # refused by the saved run
        Trainer(tiny(width=1 / 32), data, run, progress=False).run()
    assert not lock_file.exists()
    t = Trainer(tiny(duration=64), data, run, progress=False)
    t.stop_signal = signal.SIGTERM  # as if a SIGTERM came during the first iteration
    with pytest.raises(Interrupted):
        t.run()
    assert t.samples == 40 and not lock_file.exists()

