"""bf16 asked for on a CPU without bf16 arithmetic (AVX-512 BF16 or AMX; emulated there, ~10x slower
than fp32 in training on an AVX2-only EPYC) gets one warning line, from the verbs and from `train`; a CPU
with one, or fp32, gets none."""

from pathlib import Path

import pytest
import torch

from automod_cli import devices
from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config
from conftest import run_cli
from test_train_resume import OVERRIDES, make_images

WARNING = "this CPU has no bf16 arithmetic"


@pytest.fixture(params=[False, True], ids=["no-bf16", "bf16"])
def cpu_bf16(request, monkeypatch):
    monkeypatch.setattr(devices, "cpu_computes_bf16", lambda: request.param)
    return request.param


def test_the_check_agrees_with_the_cpus_flags():
    flags = Path("/proc/cpuinfo")
    if not flags.exists():
        pytest.skip("no /proc/cpuinfo")
    words = set(flags.read_text().split())
    assert devices.cpu_computes_bf16() == bool(words & {"avx512_bf16", "amx_bf16", "amx_tile"})


def test_the_warning_says_nothing_off_the_cpu(cpu_bf16):
    assert (devices.bf16_warning(torch.device("cpu")) is None) == cpu_bf16
    assert devices.bf16_warning(torch.device("cuda")) is None  # never built on; CUDA has bf16


def test_a_verb_in_bf16_warns_once_only_where_it_is_emulated(cpu_bf16, model_file, image_dir, tmp_path, capsys):
    assert run_cli("reconstruct", image_dir, "-m", model_file, "-o", tmp_path / "a", "--precision", "bf16") == 0
    assert capsys.readouterr().err.count(WARNING) == (0 if cpu_bf16 else 1)
    assert run_cli("reconstruct", image_dir, "-m", model_file, "-o", tmp_path / "b") == 0
    assert WARNING not in capsys.readouterr().err  # fp32


@pytest.mark.parametrize("precision", ["bf16", "fp32"])
def test_the_trainers_start_up_summary_warns_in_bf16(cpu_bf16, precision, tmp_path):
    cfg = resolve_config("toy32", dict(OVERRIDES, precision=precision))
    lines = Trainer(cfg, make_images(tmp_path / "data"), tmp_path / "run", progress=False).startup_summary(False)
    assert sum(WARNING in line for line in lines) == (1 if precision == "bf16" and not cpu_bf16 else 0)
