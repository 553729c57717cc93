"""Every inference verb end to end on a tiny model, and every bad input of the core issue."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.model import Automodulator, code_stack, mix_stack
from automod_cli.io.images import read_image
from conftest import run_cli


def _png(path, seed=0, size=32):
    a = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(a).save(path)
    return path


def _load(path):
    return torch.from_numpy(np.asarray(Image.open(path).convert("RGB"), dtype=np.float32)) / 127.5 - 1


def test_encode_decode_round_trip(model_file, image_dir, tmp_path, capsys):
    lat = tmp_path / "lat.safetensors"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat) == 0
    assert run_cli("info", lat, "--json") == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["codes"] == [6, 64] and info["names"] == ["alpha", "face0", "face1", "face2", "face3", "gray"]
    out = tmp_path / "dec"
    assert run_cli("decode", lat, "-m", model_file, "-o", out) == 0
    model = Automodulator.load(model_file)
    expected = model.decode(model.encode(read_image(image_dir / "face1.png", 32)[None]))[0]
    got = _load(out / "face1.png").permute(2, 0, 1)
    assert (got - expected.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6  # equal up to uint8 quantisation


def test_reconstruct_writes_outputs_and_grid(model_file, image_dir, tmp_path):
    out = tmp_path / "rec"
    assert run_cli("reconstruct", image_dir / "face0.png", image_dir / "face1.png", "-m", model_file, "-o", out) == 0
    assert sorted(p.name for p in out.iterdir()) == ["comparison.png", "face0.png", "face1.png"]
    assert Image.open(out / "comparison.png").size[0] > 2 * 32


def test_mix_takes_named_scales_from_b(model_file, image_dir, tmp_path):
    out = tmp_path / "mix.png"
    a, b = image_dir / "face0.png", image_dir / "face1.png"
    assert run_cli("mix", a, b, "--scales", "4-8", "-m", model_file, "-o", out) == 0
    model = Automodulator.load(model_file)
    za, zb = model.encode(torch.stack([read_image(a), read_image(b)])).split(1)
    expected = model.decode(mix_stack(code_stack(za, 4), zb, [0, 1]))[0]
    assert (_load(out).permute(2, 0, 1) - expected.clamp(-1, 1)).abs().max() <= 1 / 127.5 + 1e-6


def test_mix_matrix_has_reconstructions_on_the_diagonal(model_file, image_dir, tmp_path):
    out = tmp_path / "matrix.png"
    pattern = str(image_dir / "face*.png")
    assert run_cli("mix", pattern, pattern, "--scales", "coarse", "-m", model_file, "-o", out) == 0
    grid = _load(out)
    assert grid.shape[:2] == (5 * 34 + 2, 5 * 34 + 2)  # 4×4 mixes + header row and column, 2 px padding
    model = Automodulator.load(model_file)
    x = read_image(image_dir / "face2.png")[None]
    recon = model.reconstruct(x)[0].clamp(-1, 1).permute(1, 2, 0)
    cell = grid[2 + 3 * 34: 2 + 3 * 34 + 32, 2 + 3 * 34: 2 + 3 * 34 + 32]  # row 3 (A = face2), column 3 (B = face2)
    assert (cell - recon).abs().max() <= 1 / 127.5 + 1e-6


def test_mix_pairs_csv_processes_good_rows_and_lists_bad(model_file, image_dir, tmp_path, capsys):
    csv = image_dir / "pairs.csv"
    csv.write_text(f"a,b\nface0.png,face1.png\nface2.png,missing.png\n{image_dir / 'face3.png'},face0.png\nface1.png\n")
    out = tmp_path / "pairs"
    assert run_cli("mix", "--pairs", csv, "--scales", "middle", "-m", model_file, "-o", out) == 1
    assert sorted(p.name for p in out.iterdir()) == ["face0__face1.png", "face3__face0.png"]
    err = capsys.readouterr().err
    assert "missing.png" in err and "no such file" in err and "Traceback" not in err
    assert "pairs.csv:5: an empty a or b cell" in err


def test_interpolate_strip_square_and_frames(model_file, image_dir, tmp_path):
    imgs = [image_dir / f"face{i}.png" for i in range(4)]
    assert run_cli("interpolate", imgs[0], imgs[1], "--steps", "5", "-m", model_file, "-o", tmp_path / "s.png",
                   "--frames", tmp_path / "frames") == 0
    assert len(list((tmp_path / "frames").iterdir())) == 5
    assert Image.open(tmp_path / "s.png").size == (5 * 34 + 2, 34 + 2)
    assert run_cli("interpolate", *imgs, "--steps", "3", "--scales", "16-32", "-m", model_file,
                   "-o", tmp_path / "q.png") == 0
    assert Image.open(tmp_path / "q.png").size == (3 * 34 + 2, 3 * 34 + 2)
    # The strip starts at A's reconstruction and ends at B's.
    model = Automodulator.load(model_file)
    frame0, frame4 = _load(tmp_path / "frames" / "frame_0000.png"), _load(tmp_path / "frames" / "frame_0004.png")
    for frame, src in ((frame0, imgs[0]), (frame4, imgs[1])):
        recon = model.reconstruct(read_image(src)[None])[0].clamp(-1, 1).permute(1, 2, 0)
        assert (frame - recon).abs().max() <= 2 / 127.5


def test_attr_add_list_and_edit(model_file, image_dir, tmp_path, capsys):
    d_with, d_without = tmp_path / "with", tmp_path / "without"
    d_with.mkdir(), d_without.mkdir()
    for i in range(3):
        _png(d_with / f"w{i}.png", seed=10 + i)
        _png(d_without / f"n{i}.png", seed=20 + i)
    assert run_cli("attr", "add", "smile", "--with", d_with, "--without", d_without, "--scales", "16",
                   "-m", model_file) == 0
    assert run_cli("attr", "add", "smile", "--with", d_with, "--without", d_without, "-m", model_file) == 2
    assert run_cli("attr", "list", "-m", model_file) == 0
    assert "smile\tscales=16" in capsys.readouterr().out
    model = Automodulator.load(model_file)
    z_w = model.encode(torch.stack([read_image(d_with / f"w{i}.png") for i in range(3)]))
    z_n = model.encode(torch.stack([read_image(d_without / f"n{i}.png") for i in range(3)]))
    assert torch.allclose(model.attributes["smile"].delta, z_w.mean(0) - z_n.mean(0), atol=1e-6)
    out = tmp_path / "edits"
    assert run_cli("edit", image_dir / "face0.png", "--attr", "smile", "--strength", "3", "-m", model_file, "-o", out) == 0
    edited = _load(out / "face0_smile.png")
    recon = model.reconstruct(read_image(image_dir / "face0.png")[None])[0].clamp(-1, 1).permute(1, 2, 0)
    assert (edited - recon).abs().max() > 0.01  # the edit changed the image
    # A separate attribute file works the same way and leaves the model file alone.
    attrs = tmp_path / "attrs.safetensors"
    assert run_cli("attr", "add", "glasses", "--with", d_with, "--without", d_without, "--out", attrs, "-m", model_file) == 0
    assert "glasses" not in Automodulator.load(model_file).attributes
    assert run_cli("edit", image_dir / "face0.png", "--attr", "glasses", "--attr-file", attrs, "-m", model_file,
                   "-o", tmp_path / "e2") == 0


def test_sample_random_and_conditional(model_file, image_dir, tmp_path):
    assert run_cli("sample", "--n", "5", "--seed", "3", "-m", model_file, "-o", tmp_path / "s") == 0
    assert len(list((tmp_path / "s").glob("sample_*.png"))) == 5
    assert run_cli("sample", "--n", "5", "--seed", "3", "-m", model_file, "-o", tmp_path / "s2") == 0
    assert (tmp_path / "s" / "sample_0002.png").read_bytes() == (tmp_path / "s2" / "sample_0002.png").read_bytes()
    assert run_cli("sample", "--n", "3", "--keep", image_dir / "face0.png", "--scales", "4-16",
                   "-m", model_file, "-o", tmp_path / "c") == 0
    assert (tmp_path / "c" / "grid.png").exists()
    # Each conditional sample is a random code with the kept image's code at 4-16 (blocks 0-2).
    from automod_cli.model import random_codes

    model = Automodulator.load(model_file)
    zk = model.encode(read_image(image_dir / "face0.png")[None])
    z = random_codes(3, 64, torch.Generator().manual_seed(0))
    expected = model.decode(mix_stack(code_stack(z, 4), zk.expand(3, -1), [0, 1, 2]))[1].clamp(-1, 1)
    got = _load(tmp_path / "c" / "sample_0001.png").permute(2, 0, 1)
    assert (got - expected).abs().max() <= 1 / 127.5 + 1e-6


# --- bad input: one line, non-zero exit, good inputs still processed, nothing overwritten --------

def test_batch_with_bad_files(model_file, image_dir, tmp_path, capsys):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (image_dir / "notes.jpg").write_text("hello")
    out = tmp_path / "rec"
    assert run_cli("reconstruct", image_dir, image_dir / "nope.png", "-m", model_file, "-o", out) == 1
    assert len(list(out.glob("face*.png"))) == 4  # the good ones were processed
    err = capsys.readouterr().err
    assert "3 inputs skipped" in err and "nope.png: no such file" in err and "broken.png" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("args,needle", [
    (["interpolate", "{a}", "{b}", "--steps", "0"], "--steps must be at least 2"),
    (["edit", "{a}", "--attr", "frown"], "unknown attribute 'frown'"),
    (["mix", "{a}", "{b}", "--scales", "128"], "scale 128 is not in this model"),
    (["sample", "--n", "2", "--keep", "{a}"], "--keep and --scales go together"),
])
def test_usage_errors_are_one_line(model_file, image_dir, tmp_path, capsys, args, needle):
    a, b = image_dir / "face0.png", image_dir / "face1.png"
    argv = [x.format(a=a, b=b) for x in args] + ["-m", str(model_file), "-o", str(tmp_path / "o.png")]
    assert run_cli(*argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("automod: error:") and needle in err[-1]


def test_bad_model_files(image_dir, tmp_path, capsys, model_file):
    from safetensors.torch import save_file
    from automod_cli.io import modelfile

    notmodel = tmp_path / "notes.safetensors"
    notmodel.write_text("not a model")
    tensors, meta = modelfile.read_tensors(model_file)
    meta["format_version"] = "7"
    future = tmp_path / "future.safetensors"
    save_file(tensors, str(future), metadata=meta)
    for path, needle in ((notmodel, "not a model file"), (future, "version 7"), (tmp_path / "none.safetensors", "no such")):
        assert run_cli("reconstruct", image_dir / "face0.png", "-m", path, "-o", tmp_path / "r") == 2
        err = capsys.readouterr().err
        assert str(path) in err and needle in err and "Traceback" not in err


def test_latents_of_the_wrong_shape(model_file, tmp_path, capsys):
    from automod_cli.io import modelfile

    bad = tmp_path / "bad.safetensors"
    modelfile.write_tensors(bad, {"codes": torch.zeros(2, 7)}, {"format": "automod-latents", "names": ["a", "b"]})
    assert run_cli("decode", bad, "-m", model_file, "-o", tmp_path / "d") == 2
    err = capsys.readouterr().err
    assert "bad.safetensors" in err and "[N, 64]" in err


def test_outputs_are_not_overwritten(model_file, image_dir, tmp_path, capsys):
    out = tmp_path / "mix.png"
    out.write_bytes(b"precious")
    args = ["mix", image_dir / "face0.png", image_dir / "face1.png", "--scales", "4", "-m", model_file, "-o", out]
    assert run_cli(*args) == 2
    assert out.read_bytes() == b"precious" and "--overwrite" in capsys.readouterr().err
    assert run_cli(*args, "--overwrite") == 0 and out.read_bytes() != b"precious"


def test_debug_shows_the_traceback_and_console_script_works(model_file, tmp_path):
    exe = [sys.executable, "-m", "automod_cli"]
    r = subprocess.run(exe + ["decode", str(tmp_path / "nothing.safetensors"), "-m", str(model_file), "-o",
                              str(tmp_path / "d")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 2
    r = subprocess.run(exe + ["--debug", "decode", str(tmp_path / "nothing.safetensors"), "-m", str(model_file),
                              "-o", str(tmp_path / "d")], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" in r.stderr


def test_unreadable_latents_and_attribute_files_are_named(model_file, image_dir, tmp_path, capsys):
    missing = tmp_path / "nothere.safetensors"
    assert run_cli("decode", missing, "-m", model_file, "-o", tmp_path / "d") == 2
    assert f"{missing}: no such latents file" in capsys.readouterr().err
    junk = tmp_path / "junk.safetensors"
    junk.write_text("junk")
    assert run_cli("edit", image_dir / "face0.png", "--attr", "x", "--attr-file", junk, "-m", model_file,
                   "-o", tmp_path / "e") == 2
    assert f"{junk}: not an attribute file" in capsys.readouterr().err
