"""--align and --paste-back on the verbs that read images (real photo: skimage's astronaut)."""

from __future__ import annotations

import pytest
from PIL import Image

from conftest import assert_pasted_back_around_the_face, run_cli

skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    d = tmp_path_factory.mktemp("photos")
    Image.fromarray(skimage_data.astronaut()).save(d / "astronaut.png")
    Image.fromarray(skimage_data.coffee()).save(d / "coffee.png")
    return d


def test_reconstruct_with_align_and_paste_back(model_file, photos, tmp_path, capsys):
    out = tmp_path / "rec"
    code = run_cli("reconstruct", photos / "astronaut.png", photos / "coffee.png", "--align", "--paste-back",
                   "-m", model_file, "-o", out)
    assert code == 1  # coffee has no face: skipped and listed, astronaut still processed
    err = capsys.readouterr().err
    assert "coffee.png" in err and "no face found" in err
    assert Image.open(out / "astronaut.png").size == (32, 32)
    assert_pasted_back_around_the_face(out / "astronaut_photo.png")


def test_paste_back_needs_align(model_file, photos, tmp_path, capsys):
    assert run_cli("edit", photos / "astronaut.png", "--attr", "x", "--paste-back", "-m", model_file,
                   "-o", tmp_path / "e") == 2
    assert "--paste-back needs --align" in capsys.readouterr().err


def test_alignment_runs_in_worker_processes_with_the_same_result(model_file, photos, tmp_path, capsys):
    # The aligner (dlib) loads in each DataLoader worker; nothing of it is pickled, only crops and sidecars.
    args = ["reconstruct", photos / "astronaut.png", photos / "coffee.png", "--align", "--paste-back",
            "-m", model_file, "-b", 1]
    assert run_cli(*args, "-o", tmp_path / "here", "--workers", 0) == 1
    assert run_cli(*args, "-o", tmp_path / "workers", "--workers", 1) == 1
    assert "coffee.png" in capsys.readouterr().err
    for name in ("astronaut.png", "astronaut_photo.png"):
        assert (tmp_path / "here" / name).read_bytes() == (tmp_path / "workers" / name).read_bytes()
