"""benchmarks/gpu_session.sh keeps the shared candidate run across machines: --snapshot packs gpu-run/ into
the tracked candidate-run/ (model, training state in 15 MiB parts, run.tar.gz), and --collect unpacks such
files back, byte for byte. (The training itself is the trainer's, tested elsewhere.)"""
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_session.sh"


def _script(tmp_path, *args):
    env = dict(os.environ, RUN_DIR=str(tmp_path / "run"), SNAPSHOT=str(tmp_path / "snap"))
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60)


def _fake_run(root: Path, state_bytes: bytes):
    (root / "state").mkdir(parents=True)
    (root / "state" / "state.safetensors").write_bytes(state_bytes)
    (root / "model.safetensors").write_bytes(b"model" * 100)
    (root / "config.json").write_text('{"width": 0.125}')
    (root / "log.jsonl").write_text('{"kimg": 1.0}\n{"kimg": 2.0}\n')
    (root / "grids").mkdir()
    (root / "grids" / "grid-000100k.png").write_bytes(b"png")
    (root / "tensorboard").mkdir()
    (root / "tensorboard" / "events").write_bytes(b"tb")
    (root / "train.lock").write_text('{"pid": 1}')  # a snapshot taken while the run trains


def _files(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_snapshot_then_collect_restores_the_run_byte_for_byte(tmp_path):
    state = os.urandom(16 * 2**20 + 123)  # two parts
    _fake_run(tmp_path / "run", state)
    before = _files(tmp_path / "run")

    r = _script(tmp_path, "--snapshot")
    assert r.returncode == 0, r.stderr
    snap = tmp_path / "snap"
    assert sorted(p.name for p in snap.iterdir()) == [
        "model.safetensors", "run.tar.gz", "state.safetensors.part00", "state.safetensors.part01"]
    assert (snap / "state.safetensors.part00").stat().st_size == 15 * 2**20
    with tarfile.open(snap / "run.tar.gz") as tar:
        names = sorted(n.removeprefix("./") for n in tar.getnames() if tar.getmember(n).isfile())
    assert names == ["config.json", "grids/grid-000100k.png", "log.jsonl"]  # no state, model, TensorBoard, lock

    # A new machine: no run folder, only what git kept.
    (tmp_path / "kept").mkdir()
    (tmp_path / "run").rename(tmp_path / "kept" / "run")
    r = _script(tmp_path, "--collect", str(snap))
    assert r.returncode == 0, r.stderr
    after = _files(tmp_path / "run")
    expected = {k: v for k, v in before.items() if not k.startswith("tensorboard/") and k != "train.lock"}
    assert after == expected


def test_snapshot_replaces_the_previous_one(tmp_path):
    _fake_run(tmp_path / "run", b"first")
    assert _script(tmp_path, "--snapshot").returncode == 0
    (tmp_path / "run" / "state" / "state.safetensors").write_bytes(b"second")
    assert _script(tmp_path, "--snapshot").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "snap"]  # nothing left beside it
    assert (tmp_path / "snap" / "state.safetensors.part00").read_bytes() == b"second"


@pytest.mark.parametrize("verb", ["--snapshot", "--collect"])
def test_nothing_to_pack_or_unpack_is_one_line_and_an_error(tmp_path, verb):
    args = [verb] + ([str(tmp_path / "nothing")] if verb == "--collect" else [])
    r = _script(tmp_path, *args)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "tate" in r.stderr
    assert not (tmp_path / "snap").exists() and not (tmp_path / "run").exists()
