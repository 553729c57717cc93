"""The whole chain of the README's "Edit your own photo": pull --url → align → edit --attr smile
--paste-back, on a small reference-format model served from 127.0.0.1 and scikit-image's astronaut."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import assert_pasted_back_around_the_face, run_cli  # noqa: E402
from hub_helpers import CKPT_PATH, cached, served, tiny_release  # noqa: E402,F401

from automod_cli.io.images import read_image  # noqa: E402
from automod_cli.model import Automodulator, code_stack, edit_stack, parse_scales  # noqa: E402

pytest.importorskip("dlib")


def test_pull_align_edit_paste_back(tiny_release, automod_home, tmp_path, capsys):
    skimage_data = pytest.importorskip("skimage.data")
    server, entry = tiny_release
    photo = tmp_path / "astronaut.png"
    Image.fromarray(skimage_data.astronaut()).save(photo)

    # pull from a mirror URL (the catalog entry's own URL would do the same)
    mirror = "/mirror" + CKPT_PATH
    server.routes[mirror] = server.routes[CKPT_PATH]
    assert run_cli("pull", "tiny8", "--url", server.url(mirror)) == 0
    assert "attributes: smile" in capsys.readouterr().err

    # align: the face crop at the model's resolution
    assert run_cli("align", photo, "-o", tmp_path / "aligned", "--size", "8") == 0
    crop = tmp_path / "aligned" / "astronaut.png"
    assert Image.open(crop).size == (8, 8)

    # edit --align --paste-back with the pulled model, by name
    out = tmp_path / "out"
    assert run_cli("edit", photo, "--align", "--attr", "smile", "-m", "tiny8", "--paste-back", "-o", out) == 0
    err = capsys.readouterr().err
    assert f"model: {cached(automod_home)}" in err and "cartoon" not in err  # a face model: no domain warning

    # The edited crop is decode(z + δ at the attribute's scales) of the aligned face.
    model = Automodulator.load(cached(automod_home))
    attribute = model.attributes["smile"]
    z = model.encode(read_image(crop, 8)[None])
    expected = model.decode(edit_stack(code_stack(z, model.n_blocks), attribute.delta, 1.0,
                                       parse_scales(attribute.scales, model.n_blocks)))[0]
    expected = ((expected.clamp(-1, 1) + 1) * 127.5).round().permute(1, 2, 0).numpy()
    edited = np.asarray(Image.open(out / "astronaut_smile.png").convert("RGB")).astype(float)
    assert np.abs(edited - expected).max() <= 1.0
    # ...and it differs from the plain reconstruction: the direction was applied.
    plain = model.decode(code_stack(z, model.n_blocks))[0]
    assert not torch.allclose(plain, model.decode(edit_stack(code_stack(z, model.n_blocks), attribute.delta, 1.0,
                                                             parse_scales("8", model.n_blocks)))[0])

    # Pasted back: the photo's size, changed only around the face.
    assert_pasted_back_around_the_face(out / "astronaut_photo.png")
