"""Model names on every -m/--model and $AUTOMOD_MODEL, `info` (default model, latents, provenance), and
the honesty warnings: unfinished training snapshots and the toy model on aligned photos."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_cli, write_random_images  # noqa: E402

import automod_cli as am  # noqa: E402
from automod_cli.model import WEIGHTS_DIR, Automodulator  # noqa: E402

BUNDLED = WEIGHTS_DIR / "toy64.safetensors"


@pytest.fixture
def named(model_file, automod_home) -> Path:
    """The tiny model cached under the name 'mine'."""
    target = automod_home / "models" / "mine.safetensors"
    target.parent.mkdir(parents=True)
    shutil.copy(model_file, target)
    return target


def test_a_cached_name_works_on_every_model_option(named, image_dir, tmp_path, monkeypatch, capsys):
    lat = tmp_path / "a.safetensors"
    assert run_cli("encode", image_dir, "-m", "mine", "-o", lat) == 0
    assert f"model: {named}" in capsys.readouterr().err
    assert run_cli("decode", lat, "--model", "mine", "-o", tmp_path / "dec") == 0
    assert run_cli("attr", "list", "-m", "mine") == 0
    assert run_cli("info", "mine") == 0
    assert str(named) in capsys.readouterr().out
    monkeypatch.setenv("AUTOMOD_MODEL", "mine")  # the default model by name
    assert run_cli("sample", "--n", "2", "-o", tmp_path / "s") == 0
    assert f"model: {named}" in capsys.readouterr().err
    assert am.load("mine").resolution == 32 and am.load().resolution == 32
    assert run_cli("train", image_dir, "--out", tmp_path / "ft", "--preset", "toy32", "--init", "mine",
                   "--dry-run") == 0  # fine-tuning from a cached model by its name
    assert f'"init": "{named}"' in capsys.readouterr().out


def test_an_unknown_name_lists_the_cached_ones_and_the_pull_command(named, image_dir, tmp_path, capsys):
    assert run_cli("encode", image_dir, "-m", "nosuch", "-o", tmp_path / "a.safetensors") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'nosuch'" in err[0]
    assert "cached: mine" in err[0] and "automod pull --list" in err[0] and "ffhq256" in err[0]
    assert run_cli("encode", image_dir, "-m", "ffhq512", "-o", tmp_path / "a.safetensors") == 2
    assert "download it with 'automod pull ffhq512'" in capsys.readouterr().err
    assert run_cli("encode", image_dir, "-m", tmp_path / "missing.safetensors", "-o", tmp_path / "a.safetensors") == 2
    assert "missing.safetensors: no such model file" in capsys.readouterr().err


def test_a_file_wins_over_a_name(named, model_file, image_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    Automodulator.load(model_file).save(tmp_path / "mine")  # a file called like the cached model
    assert run_cli("encode", image_dir, "-m", "mine", "-o", tmp_path / "a.safetensors") == 0
    assert "model: mine (" in capsys.readouterr().err


def test_info_without_argument_describes_the_default_model(capsys):
    assert run_cli("info") == 0
    out = capsys.readouterr().out
    assert f"file        {BUNDLED}  (the default model)" in out
    assert "trained on  cartoon toy faces" in out


def test_info_prints_latents_as_a_table_and_provenance_readably(model_file, image_dir, tmp_path, capsys):
    lat = tmp_path / "codes.safetensors"
    assert run_cli("encode", image_dir, "-m", model_file, "-o", lat) == 0
    capsys.readouterr()
    assert run_cli("info", lat) == 0
    out = capsys.readouterr().out
    assert not out.lstrip().startswith("{")
    assert "codes       6 × 64 (one code per image)" in out and f"model       {model_file}" in out
    assert "names       alpha, face0, face1, face2, face3, gray" in out
    m = Automodulator.load(model_file)
    m.provenance = {"preset": "toy32", "init_from": {"path": "a.safetensors", "provenance": {"seed": 3}}}
    m.save(model_file)
    assert run_cli("info", model_file) == 0
    out = capsys.readouterr().out
    assert "provenance\n  init_from:\n    path: a.safetensors\n    provenance:\n      seed: 3\n  preset: toy32" in out
    assert '{"' not in out


def unfinished(model_file: Path, **prov) -> Path:
    m = Automodulator.load(model_file)
    m.provenance = {"preset": "custom", "data": "/data/faces", **prov}
    m.save(model_file)
    return model_file


@pytest.mark.parametrize("prov, flagged", [
    ({"trained_phase": 2, "trained_resolution": 16, "alpha": 1.0}, "training had not reached its top resolution"),
    ({"trained_phase": 3, "trained_resolution": 32, "alpha": 0.25}, "still fading in (α = 0.25)"),
    ({"trained_phase": 3, "trained_resolution": 32, "alpha": 1.0}, None),
])
def test_unfinished_snapshots_are_flagged_by_info_and_every_verb(prov, flagged, model_file, image_dir, tmp_path,
                                                                 capsys):
    unfinished(model_file, **prov)
    assert run_cli("info", model_file) == 0
    out = capsys.readouterr().out
    assert ("WARNING" in out) == (flagged is not None) and (flagged is None or flagged in out)
    for verb in (["encode", image_dir, "-o", tmp_path / "a.safetensors"], ["sample", "--n", "1", "-o", tmp_path / "s"],
                 ["attr", "list"]):
        assert run_cli(*verb, "-m", model_file) == 0
        err = capsys.readouterr().err
        if flagged:
            assert f"automod: warning: {model_file}: " in err and flagged in err
        else:
            assert f"warning: {model_file}" not in err


def test_a_real_training_snapshot_is_flagged_until_the_top_resolution(tmp_path, capsys):
    """The trainer's own provenance: a run stopped in phase 0 of an 8² model, then finished."""
    data = write_random_images(tmp_path / "data", 8, 8, seed=1)
    run = tmp_path / "run"
    tiny = ["--preset", "toy32", "--resolution", "8", "--width", "0.015625", "--latent-dim", "16",
            "--set", "phase_starts=[0,32]", "--fade", "16", "--batch-size", "8", "--workers", "0",
            "--device", "cpu", "--log-every", "16", "--checkpoint-every", "32", "--grid-every", "64",
            "--threads", "1"]
    before = torch.get_num_threads()
    try:
        assert run_cli("train", data, "--out", run, "--duration", "16", *tiny) == 0
        capsys.readouterr()
        assert run_cli("info", run / "model.safetensors") == 0
        assert "snapshot taken at 4² of a 8² model" in capsys.readouterr().out
        assert run_cli("train", data, "--out", run, "--duration", "64", *tiny) == 0  # resumed to the end
        capsys.readouterr()
        assert run_cli("info", run / "model.safetensors") == 0
        assert "WARNING" not in capsys.readouterr().out
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data")
    path = tmp_path_factory.mktemp("photo") / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(path)
    return path


def test_the_toy_model_on_an_aligned_photo_warns_once(astronaut, model_file, tmp_path, capsys):
    pytest.importorskip("dlib")
    assert run_cli("reconstruct", astronaut, astronaut, "--align", "-o", tmp_path / "r") == 0  # default: toy64
    err = capsys.readouterr().err
    assert err.count("automod: warning:") == 1
    assert "knows only cartoon toy faces" in err and "automod pull ffhq256" in err
    assert run_cli("reconstruct", astronaut, "-o", tmp_path / "r2") == 0  # no --align: no such warning
    assert "cartoon" not in capsys.readouterr().err
    # A model trained on other images says so; one whose provenance says nothing is left alone.
    m = Automodulator.load(model_file)
    m.provenance = {"trained_on": "LSUN Cars, 256²", "domain": "cars"}
    m.save(model_file)
    assert run_cli("reconstruct", astronaut, "--align", "-m", model_file, "-o", tmp_path / "r3") == 0
    assert "trained on LSUN Cars, 256², not on faces" in capsys.readouterr().err
    m.provenance = {}
    m.save(model_file)
    assert run_cli("reconstruct", astronaut, "--align", "-m", model_file, "-o", tmp_path / "r4") == 0
    assert "warning" not in capsys.readouterr().err
