"""Resuming is exact on a CPU: interrupted (lost progress, SIGTERM, SIGKILL) + resumed == uninterrupted."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config
from automod_cli.train.state import load_state
from conftest import write_random_images

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--preset", "toy32", "--resolution", "8", "--width", "0.015625", "--latent-dim", "16",
         "--set", "phase_starts=[0,64]", "--fade", "64", "--duration", "384", "--batch-size", "8",
         "--workers", "0", "--device", "cpu", "--log-every", "8", "--checkpoint-every", "32",
         "--grid-every", "100000", "--seed", "3", "--threads", "1", "--loss", "robust",
         "--set", "fade_first_phase=true", "--set", "robust_carry_over=true", "--set", "layer_noise=true"]
# The adaptive robust loss (not the toy presets' L1), so its learned parameters must resume too, and the
# paper presets' phase starts: the 4² fade (pool off until 64 samples) and the robust loss carried over to
# 8² at 64 samples, where a checkpoint falls. Layer noise on (the paper's; the toy presets turn it off), so
# its draws from the generator must resume too.
OVERRIDES = {"loss": "robust", "resolution": 8, "width": 0.015625, "latent_dim": 16, "phase_starts": [0, 64],
             "fade": 64, "duration": 384, "batch": 8, "workers": 0, "device": "cpu", "log_every": 8, "checkpoint_every": 32,
             "grid_every": 100000, "seed": 3, "threads": 1, "fade_first_phase": True, "robust_carry_over": True,
             "layer_noise": True}


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


def make_images(folder, n=20, size=8):
    return write_random_images(folder, n, size, seed=1)


def state_tensors(run_dir):
    return load_file(str(Path(run_dir) / "state" / "state.safetensors"))


def assert_same_state(a, b):
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert different == [], f"tensors differ after resuming: {different[:8]}"


def uninterrupted(data, run_dir):
    cfg = resolve_config("toy32", OVERRIDES)
    Trainer(cfg, data, run_dir, progress=False).run()
    return state_tensors(run_dir)


def test_lost_progress_resume_is_bit_exact(tmp_path):
    data = make_images(tmp_path / "data")
    ref = uninterrupted(data, tmp_path / "ref")
    cfg = resolve_config("toy32", OVERRIDES)
    # 13 iterations (104 samples): the last checkpoint is at 96; the 8 samples after it are lost.
    Trainer(cfg, data, tmp_path / "run", progress=False).run(max_iterations=13)
    assert load_state(tmp_path / "run" / "state" / "state.safetensors")[1]["samples"] == 96
    resumed = Trainer(cfg, data, tmp_path / "run", progress=False)
    resumed.run()
    assert resumed.samples == 384
    assert_same_state(ref, state_tensors(tmp_path / "run"))
    # the log was cut back to the resumed state and continued: one line per 8 samples, no duplicates
    samples = [json.loads(line)["samples"] for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert samples == list(range(8, 385, 8))
    # stopped exactly at the 8² phase start (a checkpoint at 64): the resumed run carries the robust loss
    # over at its first iteration, as the uninterrupted run did
    Trainer(cfg, data, tmp_path / "at-phase", progress=False).run(max_iterations=8)
    assert load_state(tmp_path / "at-phase" / "state" / "state.safetensors")[1]["samples"] == 64
    Trainer(cfg, data, tmp_path / "at-phase", progress=False).run()
    assert_same_state(ref, state_tensors(tmp_path / "at-phase"))


def test_bf16_resume_on_the_cpu_is_bit_exact_in_channels_last(tmp_path):
    # bf16 on a CPU trains in the channels-last layout (the fast one there): its parameters and Adam
    # moments are saved contiguous and come back into that layout on resuming, with nothing lost.
    data = make_images(tmp_path / "data")
    cfg = resolve_config("toy32", dict(OVERRIDES, precision="bf16", duration=128))
    ref = Trainer(cfg, data, tmp_path / "ref", progress=False)
    conv = ref.decoder.blocks[1].conv2.weight
    assert ref.channels_last and conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    ref.run()
    Trainer(cfg, data, tmp_path / "run", progress=False).run(max_iterations=13)  # 104 samples, saved at 96
    resumed = Trainer(cfg, data, tmp_path / "run", progress=False)
    resumed.run()
    assert resumed.samples == 128
    assert_same_state(state_tensors(tmp_path / "ref"), state_tensors(tmp_path / "run"))
    fp32 = Trainer(resolve_config("toy32", OVERRIDES), data, tmp_path / "fp32", progress=False)
    assert not fp32.channels_last and fp32.decoder.blocks[1].conv2.weight.is_contiguous()


def run_cli(args, **kw):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "automod_cli", "train", *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_for_samples(run_dir, at_least, proc, timeout=120):
    log = Path(run_dir) / "log.jsonl"
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"training ended before it could be interrupted: {proc.stderr.read()}")
        if log.exists():
            lines = log.read_text().splitlines()
            if lines and json.loads(lines[-1])["samples"] >= at_least:
                return
        time.sleep(0.02)
    raise AssertionError("training did not get going in time")


def test_sigterm_then_sigkill_then_resume_matches_uninterrupted(tmp_path, capsys):
    data = make_images(tmp_path / "data")
    run = tmp_path / "run"
    args = [str(data), "--out", str(run), *FLAGS]

    p = run_cli(args)
    wait_for_samples(run, 40, p)
    # a second trainer on the same run directory while the first runs: refused in one line naming it
    from automod_cli.cli.app import main

    assert main(["train", *args]) == 2
    refused = capsys.readouterr().err.strip().splitlines()
    assert len(refused) == 1 and "another trainer is using this run directory" in refused[0]
    assert f"PID {p.pid} on {socket.gethostname()}" in refused[0]
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "interrupted at" in err and "state saved" in err
    assert not (run / "train.lock").exists()  # released on the way out
    # the final checkpoint holds the state at the stop, which is the last logged sample count
    last_logged = json.loads((run / "log.jsonl").read_text().splitlines()[-1])["samples"]
    assert load_state(run / "state" / "state.safetensors")[1]["samples"] == last_logged >= 40

    p = run_cli(args)
    wait_for_samples(run, 200, p)
    p.kill()  # SIGKILL: no chance to save; the last checkpoint (every 32 samples) is what survives
    p.communicate(timeout=60)
    assert p.returncode == -signal.SIGKILL
    assert (run / "train.lock").exists()  # left behind, held by nobody
    killed = p.pid

    p = run_cli(args)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    assert "resuming from" in err
    assert f"took over the lock left by a trainer that is no longer running (PID {killed} on" in err
    assert not (run / "train.lock").exists()
    resumed_from = int(err.split("resuming from ")[1].split()[0])
    assert 0 < resumed_from < 384 and resumed_from % 32 == 0
    assert_same_state(uninterrupted(data, tmp_path / "ref"), state_tensors(run))
    # the model file is the newest snapshot, with provenance
    from automod_cli.model import Automodulator

    m = Automodulator.load(run / "model.safetensors")
    assert m.provenance["samples_seen"] == 384 and m.provenance["preset"] == "toy32"
    assert "automod train" in m.provenance["training_command"]


def test_sigterm_to_the_whole_process_group_with_loader_workers(tmp_path):
    """A scheduler's SIGTERM reaches every process of the job, loader workers included: the trainer
    must still write its final checkpoint and exit 143, not crash on a dead worker."""
    data = make_images(tmp_path / "data")
    run = tmp_path / "run"
    flags = [f if f != "0" or FLAGS[i - 1] != "--workers" else "1" for i, f in enumerate(FLAGS)]
    p = run_cli([str(data), "--out", str(run), *flags], start_new_session=True)
    wait_for_samples(run, 40, p)
    os.killpg(p.pid, signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 143, err
    assert "interrupted at" in err and "state saved" in err and "internal error" not in err


def test_a_full_disk_stops_the_run_with_its_last_good_state_and_the_space_it_needs(tmp_path, monkeypatch):
    import errno

    from automod_cli.errors import WriteError
    from automod_cli.train import state as state_module

    data = make_images(tmp_path / "data")
    ref = uninterrupted(data, tmp_path / "ref")
    real_save, calls = state_module.save_safetensors, []

    def full_after_first(tensors, path, metadata):
        calls.append(path)
        if len(calls) > 1:  # the second checkpoint (64 samples) finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(tensors, path, metadata)

    monkeypatch.setattr(state_module, "save_safetensors", full_after_first)
    run = tmp_path / "run"
    with pytest.raises(WriteError) as info:
        Trainer(resolve_config("toy32", OVERRIDES), data, run, progress=False).run()
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(run / "state" / "state.safetensors"))
    assert "No space left on device (the previous file is kept); training stopped, the last good state is at 32 " \
           "samples; a checkpoint needs about " in message and "free now): free some space and run the same " \
           "command to resume" in message
    _, meta = load_state(run / "state" / "state.safetensors")
    assert meta["samples"] == 32 and not list((run / "state").glob(".*"))
    monkeypatch.setattr(state_module, "save_safetensors", real_save)  # space freed: the same run resumes
    Trainer(resolve_config("toy32", OVERRIDES), data, run, progress=False).run()
    assert_same_state(state_tensors(run), ref)
