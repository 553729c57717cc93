"""``automod train``: --dry-run, the run directory, bad images skipped and counted, config mismatch."""

import json

import pytest
import torch

from automod_cli.cli.app import main
from conftest import write_random_images

TINY = ["--preset", "toy32", "--resolution", "8", "--width", "0.015625", "--latent-dim", "16",
        "--set", "phase_starts=[0,32]", "--fade", "16", "--duration", "64", "--batch-size", "8",
        "--workers", "0", "--device", "cpu", "--log-every", "16", "--checkpoint-every", "32",
        "--grid-every", "64", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)  # --threads 1 sets it for the process


def make_images(folder, n=10, size=8):
    return write_random_images(folder, n, size, seed=3)


def test_dry_run_prints_the_resolved_config(tmp_path, capsys):
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "ffhq256",
                 "--resolution", "64", "--duration", "1.5M", "--lr", "2e-3", "--dry-run"])
    assert code == 0
    cfg = json.loads(capsys.readouterr().out)
    assert cfg["resolution"] == 64 and cfg["duration"] == 1_500_000 and cfg["lr"] == [2e-3] * 5
    assert cfg["phase_starts"] == [0, 2_400_000, 4_800_000, 7_200_000, 9_600_000]
    assert not (tmp_path / "run").exists()  # nothing written
    assert cfg["init"] is None and cfg["cuda_graphs"] is False and cfg["consistency_grad"] == "all"

    code = main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "toy64", "--init",
                 "m.safetensors", "--cuda-graphs", "--dry-run"])
    cfg = json.loads(capsys.readouterr().out)
    assert code == 0 and cfg["init"] == "m.safetensors" and cfg["cuda_graphs"] is True
    assert cfg["consistency_grad"] == "image"  # the CPU presets' setting


def test_bad_option_values_are_one_line_errors(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--duration", "lots", "--dry-run"]) == 2
    assert "cannot read 'lots'" in capsys.readouterr().err
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--set", "nope=1", "--dry-run"]) == 2
    assert "unknown training setting 'nope'" in capsys.readouterr().err


def test_run_dir_bad_image_skipped_and_config_mismatch(tmp_path, capsys):
    data = make_images(tmp_path / "data")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *TINY]) == 0
    err = capsys.readouterr().err
    assert "trained to 64 samples" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resolution"] == 8 and cfg["width"] == 0.015625
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in lines] == [16, 32, 48, 64]
    for key in ("kl_real", "kl_fake", "recon", "kl_gap", "loss_e", "kl_dec", "cos", "consistency", "loss_d",
                "phase", "resolution", "alpha", "lr", "images_per_s"):
        assert key in lines[-1]
    assert lines[-1]["skipped_files"] == 1  # the broken file was met, replaced and counted
    assert (run / "model.safetensors").exists() and (run / "state" / "state.safetensors").exists()
    grids = sorted(p.name for p in (run / "grids").iterdir())
    assert any("samples" in g for g in grids) and any("mixing" in g for g in grids)

    # the same command again: nothing left to do, it resumes at 64 and stops
    assert main(["train", str(data), "--out", str(run), *TINY]) == 0
    assert "resuming from 64 samples" in capsys.readouterr().err
    # another configuration in the same run directory is refused
    other = [a if a != "0.015625" else "0.03125" for a in TINY]
    assert main(["train", str(data), "--out", str(run), *other]) == 2
    err = capsys.readouterr().err
    assert "another configuration" in err and "width" in err

    # where and in which arithmetic it runs may change on resuming: a longer run in bf16 goes on
    longer = [a if a != "64" else "96" for a in TINY] + ["--precision", "bf16"]
    assert main(["train", str(data), "--out", str(run), *longer]) == 0
    err = capsys.readouterr().err
    assert "resuming from 64 samples" in err and "trained to 96 samples" in err
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["precision"] == "bf16" and cfg["duration"] == 96
