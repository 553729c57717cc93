"""What peers offer: samples by seed, seed-based mixing grids, interpolation videos."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.model import Automodulator, code_stack, mix_stack, parse_seeds
from automod_cli.errors import UserError
from conftest import run_cli


def _load(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)) / 127.5 - 1


def _seed_code(seed: int, dim: int = 64) -> torch.Tensor:
    # Written out here rather than imported: normalize(N(0, I)) from a generator seeded with the seed.
    z = torch.randn(1, dim, generator=torch.Generator().manual_seed(seed))
    return z / z.norm(dim=1, keepdim=True)


def test_parse_seeds():
    assert parse_seeds("0-3,10,20-22") == [0, 1, 2, 3, 10, 20, 21, 22]
    assert parse_seeds("5, 1,5") == [5, 1]
    for bad in ("3-1", "a", "-2", "", "1-2000000"):
        with pytest.raises(UserError):
            parse_seeds(bad)


def test_sample_seeds_one_file_per_seed_reproducible(model_file, tmp_path):
    assert run_cli("sample", "--seeds", "0-3,7", "-m", model_file, "-o", tmp_path / "a") == 0
    assert sorted(p.name for p in (tmp_path / "a").glob("seed*.png")) == \
        ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png", "seed0007.png"]
    # Seed 2 gives the same image alone, in another list, and from another batch size.
    assert run_cli("sample", "--seeds", "9,2", "-b", 1, "-m", model_file, "-o", tmp_path / "b") == 0
    assert (tmp_path / "a" / "seed0002.png").read_bytes() == (tmp_path / "b" / "seed0002.png").read_bytes()
    model = Automodulator.load(model_file)
    expected = model.decode(_seed_code(7))[0].clamp(-1, 1).permute(1, 2, 0)
    assert (_load(tmp_path / "a" / "seed0007.png") - expected).abs().max() <= 1 / 127.5 + 1e-6


def test_sample_seeds_with_noise_are_reproducible_too(model_file, tmp_path):
    assert run_cli("sample", "--seeds", "1-3", "--noise", "-m", model_file, "-o", tmp_path / "a") == 0
    assert run_cli("sample", "--seeds", "3", "--noise", "-m", model_file, "-o", tmp_path / "b") == 0
    assert (tmp_path / "a" / "seed0003.png").read_bytes() == (tmp_path / "b" / "seed0003.png").read_bytes()


def test_sample_n_and_seeds_are_exclusive(model_file, tmp_path, capsys):
    assert run_cli("sample", "--n", 2, "--seeds", "1-2", "-m", model_file, "-o", tmp_path / "s") == 2
    assert "not both" in capsys.readouterr().err


def test_mix_grid_from_seeds(model_file, tmp_path):
    out = tmp_path / "grid.png"
    assert run_cli("mix", "--row-seeds", "0-2", "--col-seeds", "5,6", "-s", "4-8", "-m", model_file, "-o", out) == 0
    grid = _load(out)
    assert grid.shape[:2] == (4 * 34 + 2, 3 * 34 + 2)  # header row + 3 rows, header column + 2 columns
    model = Automodulator.load(model_file)
    za, zb = _seed_code(1), _seed_code(6)  # row 2 (seed 1), column 2 (seed 6)
    cell = grid[2 + 2 * 34: 2 + 2 * 34 + 32, 2 + 2 * 34: 2 + 2 * 34 + 32]
    expected = model.decode(mix_stack(code_stack(za, 4), zb, [0, 1]))[0].clamp(-1, 1).permute(1, 2, 0)
    assert (cell - expected).abs().max() <= 1 / 127.5 + 1e-6
    header = grid[2:34, 2 + 34: 2 + 34 + 32]  # top row, first column: seed 5's image
    assert (header - model.decode(_seed_code(5))[0].clamp(-1, 1).permute(1, 2, 0)).abs().max() <= 1 / 127.5 + 1e-6


def test_mix_images_against_seeds(model_file, image_dir, tmp_path):
    out = tmp_path / "grid.png"
    assert run_cli("mix", str(image_dir / "face*.png"), "--col-seeds", "1-3", "-s", "coarse", "-m", model_file,
                   "-o", out) == 0
    assert Image.open(out).size == (4 * 34 + 2, 5 * 34 + 2)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_interpolation_video_with_pillow(model_file, image_dir, tmp_path, suffix):
    video = tmp_path / f"strip{suffix}"
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "--steps", 6, "--video", video,
                   "--fps", 10, "-m", model_file) == 0
    with Image.open(video) as im:
        assert im.n_frames == 6 and im.size == (32, 32)
        if suffix == ".gif":
            assert im.info["duration"] == 100 and im.info["loop"] == 0
    once = tmp_path / f"once{suffix}"
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "--steps", 3, "--video", once,
                   "--no-loop", "-m", model_file) == 0
    with Image.open(once) as im:
        assert im.n_frames == 3 and im.info.get("loop", 1) != 0


def test_interpolation_video_mp4(model_file, image_dir, tmp_path):
    ffmpeg = pytest.importorskip("imageio_ffmpeg")
    video = tmp_path / "strip.mp4"
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "--steps", 8, "--video", video,
                   "--fps", 12, "-m", model_file) == 0
    frames = ffmpeg.read_frames(str(video))
    meta = next(frames)
    assert meta["size"] == (32, 32) and meta["fps"] == 12 and sum(1 for _ in frames) == 8
    assert not list(tmp_path.glob(".strip*"))


def test_mp4_without_the_extra_is_one_clear_line(model_file, image_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # as if not installed
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "--video", tmp_path / "v.mp4",
                   "-m", model_file) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("automod: error:") and "pip install 'automod-cli[video]'" in err[-1]
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "--video", tmp_path / "v.avi",
                   "-m", model_file) == 2
    assert ".gif, .webp or .mp4" in capsys.readouterr().err


def test_interpolate_needs_some_output(model_file, image_dir, capsys):
    assert run_cli("interpolate", image_dir / "face0.png", image_dir / "face1.png", "-m", model_file) == 2
    assert "--frames" in capsys.readouterr().err
