"""The slips a new user makes: each gets one clear line and a non-zero exit, or just works."""

from __future__ import annotations

import errno
import hashlib
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.errors import WriteError
from automod_cli.io.atomic import atomic_path
from automod_cli.model import Automodulator
from conftest import run_cli


def _one_error_line(err: str) -> str:
    lines = [line for line in err.strip().splitlines() if line.startswith("automod: error:")]
    assert len(lines) == 1 and "Traceback" not in err and "internal error" not in err, err
    return lines[0]


# --- outputs -------------------------------------------------------------------------------------

def test_reconstruct_into_an_existing_file_is_one_line(model_file, image_dir, tmp_path, capsys):
    target = tmp_path / "existing_file.png"
    target.write_bytes(b"precious")
    assert run_cli("reconstruct", image_dir / "face0.png", "-m", model_file, "-o", target) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert str(target) in line and "takes a folder" in line
    assert target.read_bytes() == b"precious"


def test_output_folders_are_created_as_needed(model_file, image_dir, tmp_path):
    out = tmp_path / "a" / "b" / "c"
    assert run_cli("reconstruct", image_dir / "face0.png", "-m", model_file, "-o", out) == 0
    assert (out / "face0.png").exists()


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_encode_writes_numpy_formats_and_decode_reads_them(model_file, image_dir, tmp_path, suffix):
    lat = tmp_path / f"lat{suffix}"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat) == 0
    names = ["alpha", "face0", "face1", "face2", "face3", "gray"]
    if suffix == ".npy":
        codes = np.load(lat, allow_pickle=False)
        assert (tmp_path / "lat.names.txt").read_text().split() == names
    else:
        with np.load(lat, allow_pickle=False) as z:
            codes = z["codes"]
            assert list(z["names"]) == names
    assert codes.shape == (6, 64) and codes.dtype == np.float32
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-5)
    ref = tmp_path / "lat.safetensors"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", ref) == 0
    assert run_cli("decode", lat, "-m", model_file, "-o", tmp_path / "from_numpy") == 0
    assert run_cli("decode", ref, "-m", model_file, "-o", tmp_path / "from_st") == 0
    for name in names:
        assert (tmp_path / "from_numpy" / f"{name}.png").read_bytes() == (tmp_path / "from_st" / f"{name}.png").read_bytes()


@pytest.mark.parametrize("output,needle", [("latdir/", "is a folder"), ("{existing_dir}", "is a folder"),
                                           ("lat.pt", "needs the suffix"), ("lat", "needs the suffix")])
def test_encode_refuses_folders_and_unknown_suffixes(model_file, image_dir, tmp_path, capsys, output, needle):
    (tmp_path / "somedir").mkdir()
    output = str(tmp_path / "somedir") if output == "{existing_dir}" else str(tmp_path) + "/" + output
    assert run_cli("encode", image_dir, "-m", model_file, "-o", output) == 2
    assert needle in _one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["images", "somedir", "tiny.safetensors"]


# --- failed writes: one line naming the file and the cause, no temp file, the old file kept --------

def test_atomic_write_that_fails_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "state.bin"
    target.write_bytes(b"last good state")

    def full_disk(tmp):
        tmp.write_bytes(b"half of it")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(WriteError) as info:
        with atomic_path(target) as tmp:
            full_disk(tmp)
    message = str(info.value)
    assert message.startswith(f"{target}: ") and "No space left on device" in message and "\n" not in message
    assert "previous file is kept" in message
    assert target.read_bytes() == b"last good state" and [p.name for p in tmp_path.iterdir()] == ["state.bin"]
    with pytest.raises(WriteError, match="Disk quota exceeded .no partial file was left"):
        with atomic_path(tmp_path / "new.bin") as tmp:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", str(tmp))
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]
    # Not a file-system error (a network error while a download streams in): passed on as it is.
    with pytest.raises(ConnectionResetError):
        with atomic_path(tmp_path / "dl.bin"):
            raise ConnectionResetError(errno.ECONNRESET, "reset")
    assert [p.name for p in tmp_path.iterdir()] == ["state.bin"]


def _safetensors_disk_full(*args, **kwargs):
    from safetensors import SafetensorError

    raise SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                          'message: "No space left on device" })')


def test_full_disk_while_writing_latents_or_a_model_is_one_line(model_file, image_dir, tmp_path, capsys, monkeypatch):
    from automod_cli.io import modelfile

    lat = tmp_path / "lat.safetensors"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat) == 0
    before = lat.read_bytes()
    monkeypatch.setattr(modelfile, "save_file", _safetensors_disk_full)
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat, "--overwrite") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert f"{lat}: could not be written: No space left on device (the previous file is kept)" in line
    assert lat.read_bytes() == before and not list(tmp_path.glob(".lat*"))
    # The model file (attr add writes it) and the training state go the same way.
    with pytest.raises(WriteError, match="No space left on device"):
        Automodulator.load(model_file).save(model_file)
    from automod_cli.train.state import save_state

    with pytest.raises(WriteError, match="state.safetensors: could not be written: No space left"):
        save_state(tmp_path / "state.safetensors", {"w": torch.zeros(2)}, {"samples": 1})
    assert not list(tmp_path.glob(".state*"))


def test_full_disk_while_writing_images_stops_with_one_line(model_file, image_dir, tmp_path, capsys, monkeypatch):
    real_save = Image.Image.save
    written = []

    def save_until_full(self, fp, *args, **kwargs):
        if len(written) >= 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(fp)
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save_until_full)
    out = tmp_path / "rec"
    assert run_cli("reconstruct", image_dir, "-m", model_file, "-o", out, "-b", 2) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "could not be written: No space left on device" in line and str(out) in line
    assert len(list(out.glob("*.png"))) == 2 and not list(out.glob(".*"))


# --- weights, options, help ---------------------------------------------------------------------

def test_corrupt_metric_weights_file_says_it_is_not_the_published_one(tmp_path, capsys, monkeypatch, image_dir):
    from automod_cli.metrics import weights as W

    monkeypatch.setenv("AUTOMOD_RESULTS", str(tmp_path / "results.jsonl"))
    folder = tmp_path / "w"
    folder.mkdir()
    junk = folder / W.SPECS["inception"].filename
    junk.write_bytes(b"junk\n")
    assert run_cli("fid", image_dir, image_dir, "--weights-dir", folder) == 2
    line = _one_error_line(capsys.readouterr().err)
    digest = hashlib.sha256(b"junk\n").hexdigest()
    assert str(junk) in line and "not the published file" in line and digest[:16] in line
    assert W.SPECS["inception"].url in line
    # A truncated real checkpoint too.
    torch.save({"w": torch.zeros(1000)}, junk)
    junk.write_bytes(junk.read_bytes()[:300])
    assert run_cli("fid", image_dir, image_dir, "--weights-dir", folder) == 2
    assert "not the published file" in _one_error_line(capsys.readouterr().err)


def test_an_option_given_twice_is_refused(model_file, image_dir, tmp_path, capsys):
    a, b = image_dir / "face0.png", image_dir / "face1.png"
    assert run_cli("sample", "--n", 2, "--keep", a, "--keep", b, "--scales", "4", "-m", model_file,
                   "-o", tmp_path / "s") == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--keep" in line and "2 times" in line and str(b) in line
    assert not (tmp_path / "s").exists()
    assert run_cli("attr", "add", "x", "--with", a, "--without", b, "--scales=4", "-s", "8", "-m", model_file) == 2
    assert "--scales" in _one_error_line(capsys.readouterr().err)


def test_version_and_short_help(capsys):
    from automod_cli import __version__

    assert run_cli("--version") == 0
    assert capsys.readouterr().out.startswith(f"automod {__version__}")
    assert run_cli("-h") == 0
    out = capsys.readouterr().out
    assert "encode" in out and "3 the metric networks' weights are missing" in out
    assert run_cli("encode", "-h") == 0 and "--precision" in capsys.readouterr().out


def test_help_is_not_cut_when_stdout_is_not_a_terminal():
    r = subprocess.run([sys.executable, "-m", "automod_cli", "train", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--checkpoint-every" in r.stdout and "--checkpoint-ev…" not in r.stdout


def test_one_edit_is_singular(model_file, image_dir, tmp_path, capsys):
    d = tmp_path / "w"
    d.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(d / "red.png")
    Image.new("RGB", (32, 32), (10, 10, 200)).save(d / "blue.png")
    assert run_cli("attr", "add", "red", "--with", d / "red.png", "--without", d / "blue.png", "-m", model_file) == 0
    assert run_cli("edit", image_dir / "face0.png", "--attr", "red", "-m", model_file, "-o", tmp_path / "e") == 0
    err = capsys.readouterr().err
    assert "wrote 1 edit (" in err and "1 edits" not in err


def test_align_all_faces_default_threshold_matches_the_help(tmp_path, capsys):
    skdata = pytest.importorskip("skimage.data")
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skdata.astronaut()).save(photo)
    out = tmp_path / "faces"
    assert run_cli("align", photo, "-o", out, "--faces", "all", "--size", 32, "--transform-size", 64,
                   "--workers", 1) == 0
    # dlib also fires (score ~0.1) on the mission patch; the help says real faces score above 0.5.
    assert sorted(p.name for p in out.glob("*.png")) == ["astronaut_01.png"]
    assert "aligned 1 face from 1 of 1 photo" in capsys.readouterr().err
    assert run_cli("align", photo, "-o", tmp_path / "loose", "--faces", "all", "--min-score", 0, "--size", 32,
                   "--transform-size", 64, "--workers", 1) == 0
    assert len(list((tmp_path / "loose").glob("*.png"))) >= 2
