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
    assert cfg["compile"] is False

    init = tmp_path / "m.safetensors"
    init.write_bytes(b"")  # read when training starts, not by --dry-run
    code = main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "toy64", "--init",
                 str(init), "--cuda-graphs", "--compile", "--dry-run"])
    out = capsys.readouterr()
    cfg = json.loads(out.out)
    assert code == 0 and cfg["init"] == str(init) and cfg["cuda_graphs"] is True and cfg["compile"] is True
    assert "compile" not in out.err  # a setting of speed, not a departure from the paper
    assert cfg["consistency_grad"] == "image"  # the CPU presets' setting
    # An --init model that is neither a file nor a cached name: one line before anything runs.
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "run"), "--preset", "toy64", "--init",
                 str(tmp_path / "missing.safetensors"), "--dry-run"]) == 2
    assert "missing.safetensors: no such model file" in capsys.readouterr().err


def test_bad_option_values_are_one_line_errors(tmp_path, capsys):
    base = ["train", str(tmp_path), "--out", str(tmp_path / "r"), "--preset", "ffhq256", "--dry-run"]
    assert main([*base, "--duration", "lots"]) == 2
    assert "cannot read 'lots'" in capsys.readouterr().err
    assert main([*base, "--set", "nope=1"]) == 2
    assert "unknown training setting 'nope'" in capsys.readouterr().err
    assert main([*base, "--metrics", "kid"]) == 2
    assert "unknown metric 'kid'" in capsys.readouterr().err


def test_no_silent_default_preset(tmp_path, capsys):
    """Without --preset the data's resolution picks the one preset that trains it, and says so; data that
    several presets (or none) could train stops with the list."""
    faces32 = write_random_images(tmp_path / "faces32", 3, 32, seed=1)
    assert main(["train", str(faces32), "--out", str(tmp_path / "r"), "--dry-run"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["preset"] == "toy32"
    assert "no --preset given: the data is 32² and toy32 is the one preset at 32²" in captured.err
    for size, why in ((256, "4 presets train 256² (ffhq256, celebahq256, lsun-cars256, lsun-bedrooms256)"),
                      (48, "no preset trains 48² images")):
        data = write_random_images(tmp_path / f"d{size}", 2, size, seed=1)
        assert main(["train", str(data), "--out", str(tmp_path / "r"), "--dry-run"]) == 2
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and why in err[0] and "toy64 (64², CPU)" in err[0] and captured.out == ""
    assert not (tmp_path / "r").exists()


def test_dry_run_prints_the_phase_table_and_warns_about_a_short_run(tmp_path, capsys):
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--preset", "toy32", "--duration", "6k",
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning: the run ends at 6k samples, before its top phase (32²) starts at 32k" in err
    assert "the model will be 4²" in err
    rows = [line.split() for line in err.splitlines() if line.strip()[:1].isdigit()]
    assert rows[0][:6] == ["0", "4²", "0", "6k", "32", "0.001"] and rows[3][:3] == ["3", "32²", "32k"]
    assert "(not reached)" in err

    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--preset", "lsun-bedrooms256",
                 "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "no departures from the paper" in err
    rows = [line.split() for line in err.splitlines() if line.strip()[:1].isdigit()]
    assert rows[6] == ["6", "256²", "24.84M", "2.76M", "32", "0.001", "0.05"]
    assert main(["train", str(tmp_path), "--out", str(tmp_path / "r"), "--preset", "ffhq256", "--precision",
                 "bf16", "--batch-size", "16", "--dry-run"]) == 0
    err = capsys.readouterr().err
    assert "bf16 autocast (paper fp32)" in err and "batch [16, 16, 16, 16, 16, 16, 16]" in err


def test_run_dir_bad_image_skipped_and_config_mismatch(tmp_path, capsys):
    data = make_images(tmp_path / "data")
    (data / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), *TINY]) == 0
    err = capsys.readouterr().err
    assert "trained to 64 samples" in err
    # the start-up summary, then one progress line per log interval
    for start in ("automod train: ", "  data      11 images (folder", "  device    cpu, 1 thread, fp32",
                  "  model     8² large, width 1/64, latent 16", "  preset    toy32: a CPU-sized preset",
                  "  departs   width 1/64 (paper 1)"):
        assert any(line.startswith(start) for line in err.splitlines()), start
    progress = [line for line in err.splitlines() if line.startswith("phase ")]
    assert len(progress) == 4 and progress[-1].startswith("phase 1 8² α 1.00 | kimg 0.064/0.064 | ")
    assert "img/s | ETA phase 0s, run 0s | E " in progress[-1] and " D cos " in progress[-1]
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["resolution"] == 8 and cfg["width"] == 0.015625
    lines = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["samples"] for r in lines] == [16, 32, 48, 64]
    for key in ("kl_real", "kl_fake", "recon", "kl_gap", "loss_e", "real_code_cos", "kl_dec", "cos", "consistency",
                "loss_d", "phase", "resolution", "alpha", "lr", "images_per_s", "cosine"):
        assert key in lines[-1]
    # the progress line shows the latent term as a cosine; the log keeps the raw term too
    assert lines[-1]["cosine"] == pytest.approx(16 * (2 - lines[-1]["cos"]), abs=1e-5)
    assert f"D cos {lines[-1]['cosine']:.3f} " in progress[-1]
    assert progress[-1].endswith(f"codes cos {lines[-1]['real_code_cos']:.2f}")  # the collapse monitor
    assert -1.0 <= lines[-1]["real_code_cos"] <= 1.0
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
