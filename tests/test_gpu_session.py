"""benchmarks/gpu_session.sh keeps the shared candidate run across machines: --snapshot packs gpu-run/ into
the tracked candidate-run/ (one run.tar.gz in 15 MiB parts: the model file, the training state less the
tensors the model file holds, the rest of the run), and --collect unpacks it: the model file byte for byte,
the state tensor for tensor. Where the exact files exceed what a GPU call can return, the optimisers'
moments and the image pool travel in bf16 (benchmarks/run_transfer.py), and the unpacked state says so.
(The training itself is the trainer's, tested elsewhere.)"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from automod_cli.train.schedule import resolve_config
from automod_cli.train.state import load_state, save_state

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "gpu_session.sh"
TRANSFER = REPO / "benchmarks" / "run_transfer.py"


def _script(tmp_path, *args):
    env = dict(os.environ, RUN_DIR=str(tmp_path / "run"), SNAPSHOT=str(tmp_path / "snap"), PY=sys.executable)
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def _transfer(*args):
    return subprocess.run([sys.executable, str(TRANSFER), *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def _fake_run(root: Path, n: int = 1000, n_opt: int = 1000, seed: int = 0):
    """A run folder whose model file holds the encoder and EMA decoder its state holds, as the trainer's:
    weights of ``n`` and optimiser moments of ``n_opt`` random fp32 numbers (which hardly compress)."""
    g = torch.Generator().manual_seed(seed)
    enc, ema, live = (torch.randn(n, generator=g) for _ in range(3))
    root.mkdir(parents=True)
    save_file({"encoder.w": enc, "decoder.w": ema}, str(root / "model.safetensors"),
              metadata={"format": "automod-model", "config": "{}"})
    state = {"encoder.w": enc, "ema.w": ema, "decoder.w": live,
             "opt.e.0.exp_avg": torch.randn(n_opt, generator=g), "opt.e.0.exp_avg_sq": torch.rand(n_opt, generator=g),
             "pool.images": torch.rand(4, 3, 8, 8, generator=g) * 2 - 1,
             "rng.torch": torch.randint(0, 255, (64,), dtype=torch.uint8, generator=g)}
    save_state(root / "state" / "state.safetensors", state, {"samples": 1234, "config": {"width": 0.25}})
    (root / "config.json").write_text('{"width": 0.25}')
    (root / "log.jsonl").write_text('{"samples": 1000}\n{"samples": 1234}\n')
    (root / "grids").mkdir()
    for k in range(6):
        (root / "grids" / f"{k:09d}-mixing.png").write_bytes(b"png%d" % k)
    (root / "tensorboard").mkdir()
    (root / "tensorboard" / "events").write_bytes(b"tb")
    (root / "train.lock").write_text('{"pid": 1}')  # a snapshot taken while the run trains
    return state


def _files(root: Path):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_snapshot_then_collect_restores_the_run(tmp_path):
    state = _fake_run(tmp_path / "run", n=2**21, n_opt=2**19)  # 8 MiB a weight, 2 MiB a moment
    before = _files(tmp_path / "run")

    r = _script(tmp_path, "--snapshot")
    assert r.returncode == 0, r.stderr
    assert "exact" in r.stdout and "state at 1,234 samples" in r.stdout
    snap = tmp_path / "snap"
    parts = sorted(p.name for p in snap.iterdir())
    assert parts == [f"run.tar.gz.part{i:02d}" for i in range(len(parts))] and len(parts) >= 2
    assert (snap / parts[0]).stat().st_size == 15 * 2**20
    # The encoder and EMA decoder travel once, in the model file: 28 MiB, not 44.
    assert sum((snap / p).stat().st_size for p in parts) < 29 * 2**20

    # A new machine: no run folder, only what git kept.
    (tmp_path / "kept").mkdir()
    (tmp_path / "run").rename(tmp_path / "kept" / "run")
    r = _script(tmp_path, "--collect", str(snap))
    assert r.returncode == 0, r.stderr
    after = _files(tmp_path / "run")
    tensors, meta = load_state(tmp_path / "run" / "state" / "state.safetensors")
    assert meta == {"samples": 1234, "config": {"width": 0.25}}
    assert tensors.keys() == state.keys()
    assert all(tensors[k].dtype == v.dtype and torch.equal(tensors[k], v) for k, v in state.items())
    expected = {k: v for k, v in before.items() if not k.startswith(("tensorboard/", "state/"))
                and k != "train.lock" and k not in ("grids/000000000-mixing.png", "grids/000000001-mixing.png")}
    del after["state/state.safetensors"]
    assert after == expected  # the model file byte for byte, the newest four grids, no TensorBoard, no lock


def test_over_the_limit_the_moments_and_pool_travel_in_bf16(tmp_path):
    state = _fake_run(tmp_path / "run", n=2**18, n_opt=2**21)  # exact 19 MiB, moments in bf16 11 MiB
    r = _transfer("pack", tmp_path / "run", tmp_path / "snap", "--max-mib", 15)
    assert r.returncode == 0, r.stderr
    assert "bf16" in r.stdout and "not bit-exact" in r.stdout
    r = _transfer("unpack", tmp_path / "snap", tmp_path / "back")
    assert r.returncode == 0, r.stderr
    assert "rounded to bf16" in r.stdout
    tensors, meta = load_state(tmp_path / "back" / "state" / "state.safetensors")
    assert meta == {"samples": 1234, "config": {"width": 0.25}}
    for k, v in state.items():
        assert tensors[k].dtype == v.dtype
        if k.startswith(("opt.", "pool.")):
            assert torch.equal(tensors[k], v.to(torch.bfloat16).float()) and not torch.equal(tensors[k], v)
        else:
            assert torch.equal(tensors[k], v), k  # the weights, live and EMA, and the RNG exactly
    from safetensors import safe_open
    with safe_open(str(tmp_path / "back" / "state" / "state.safetensors"), "pt") as f:
        assert "opt.e.0.exp_avg" in f.metadata()["transfer_rounded"]


def test_a_run_too_big_even_in_bf16_is_one_line_and_leaves_nothing(tmp_path):
    _fake_run(tmp_path / "run", n=2**18, n_opt=2**21)
    r = _transfer("pack", tmp_path / "run", tmp_path / "snap", "--max-mib", 5)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and "MiB" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_snapshot_replaces_the_previous_one(tmp_path):
    _fake_run(tmp_path / "run", seed=1)
    assert _script(tmp_path, "--snapshot").returncode == 0
    (tmp_path / "run").rename(tmp_path / "first")
    state = _fake_run(tmp_path / "run", seed=2)
    assert _script(tmp_path, "--snapshot").returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first", "run", "snap"]  # nothing left beside it
    (tmp_path / "run").rename(tmp_path / "second")
    assert _script(tmp_path, "--collect", str(tmp_path / "snap")).returncode == 0
    tensors, _ = load_state(tmp_path / "run" / "state" / "state.safetensors")
    assert torch.equal(tensors["decoder.w"], state["decoder.w"])


@pytest.mark.parametrize("verb", ["--snapshot", "--collect"])
def test_nothing_to_pack_or_unpack_is_one_line_and_an_error(tmp_path, verb):
    args = [verb] + ([str(tmp_path / "nothing")] if verb == "--collect" else [])
    r = _script(tmp_path, *args)
    assert r.returncode != 0
    assert len(r.stderr.strip().splitlines()) == 1 and ("state" in r.stderr or "run.tar.gz" in r.stderr)
    assert not (tmp_path / "snap").exists() and not (tmp_path / "run").exists()


@pytest.mark.parametrize("env, precision, compiled", [({}, "fp32", False),
                                                       ({"CPU_PRECISION": "bf16", "CPU_COMPILE": "1"}, "bf16", True)])
def test_cpu_leg_passes_precision_and_compile_to_the_run(tmp_path, env, precision, compiled):
    """--cpu hands the trainer the run's settings plus this machine's: CPU_PRECISION and CPU_COMPILE reach
    the resolved config (a stand-in for Python records the overrides instead of training)."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "labels.csv").write_text("name\n")  # faces already drawn: none are drawn here
    seen = tmp_path / "overrides.json"
    fake = tmp_path / "python"
    fake.write_text(f'#!/bin/sh\ncat >/dev/null\nprintf "%s" "$4" > "{seen}"\n')
    fake.chmod(0o755)
    run_env = {k: v for k, v in os.environ.items() if k not in ("CPU_PRECISION", "CPU_COMPILE")}
    run_env.update(RUN_DIR=str(tmp_path / "run"), SNAPSHOT=str(tmp_path / "snap"), PY=str(fake), DATA=str(data),
                   **env)
    res = subprocess.run(["bash", str(SCRIPT), "--cpu", "30"], env=run_env, capture_output=True, text=True,
                         timeout=60)
    assert res.returncode == 0, res.stderr
    over = json.loads(seen.read_text())
    assert (over["device"], over["precision"], over["compile"], over["width"]) == ("cpu", precision, compiled, 0.25)
    cfg = resolve_config("toy64", over)
    assert (cfg["precision"], cfg["compile"], cfg["duration"]) == (precision, compiled, 3_000_000)
