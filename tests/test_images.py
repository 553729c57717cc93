"""Reading any image safely."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.errors import InputError, UserError
from automod_cli.io.images import expand_inputs, read_image, to_uint8


def test_modes_are_converted(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (16, 16), dtype=np.uint8), "L").save(tmp_path / "g.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 4), dtype=np.uint8), "RGBA").save(tmp_path / "a.png")
    Image.fromarray((rng.integers(0, 65536, (16, 16))).astype(np.uint16)).save(tmp_path / "d.png")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("P").save(tmp_path / "p.gif")
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).convert("CMYK").save(tmp_path / "c.jpg")
    for name in ["g.png", "a.png", "d.png", "p.gif", "c.jpg"]:
        x = read_image(tmp_path / name, 16)
        assert x.shape == (3, 16, 16) and x.min() >= -1 and x.max() <= 1, name
    # 16-bit keeps its range: the brightest pixel maps to (nearly) white, not a clipped 8-bit value.
    x = read_image(tmp_path / "d.png")
    assert x.max() > 0.95 and x.min() < -0.95


def test_exif_rotation_is_applied(tmp_path):
    a = np.zeros((10, 20, 3), dtype=np.uint8)
    a[:, :10] = 255  # left half white
    im = Image.fromarray(a)
    exif = im.getexif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    x = read_image(tmp_path / "r.jpg")
    assert x.shape == (3, 20, 10)  # displayed as portrait
    assert x[:, :10].mean() > 0.5 and x[:, 10:].mean() < -0.5  # white half now on top


def test_non_square_and_wrong_size_warn(tmp_path):
    Image.new("RGB", (40, 30)).save(tmp_path / "w.png")
    with pytest.warns(UserWarning, match="not square"):
        x = read_image(tmp_path / "w.png", 16)
    assert x.shape == (3, 16, 16)


@pytest.mark.parametrize("content,reason", [(b"not an image", "not an image"), (None, "no such file")])
def test_bad_files(tmp_path, content, reason):
    p = tmp_path / "bad.png"
    if content is not None:
        p.write_bytes(content)
    with pytest.raises(InputError, match=reason) as e:
        read_image(p)
    assert str(p) in str(e.value)


def test_truncated_png(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / "t.png")
    data = (tmp_path / "t.png").read_bytes()
    (tmp_path / "t.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_image(tmp_path / "t.png")


def test_pixel_bomb_refused(tmp_path, monkeypatch):
    import automod_cli.io.images as images

    Image.new("RGB", (64, 64)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(InputError, match="too large"):
        images.read_image(tmp_path / "big.png")


def test_round_half_up_quantisation():
    # 0.0 maps to exactly 127.5: half-up gives 128; values just around a half go their own way.
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 2.0, 0.003, -0.003])
    assert to_uint8(x).tolist() == [0, 255, 128, 0, 255, 128, 127]
    # A decoded uint8 image survives the round trip exactly.
    u = torch.arange(256, dtype=torch.float32)
    assert torch.equal(to_uint8(u / 127.5 - 1.0), u.to(torch.uint8))


def test_expand_inputs(tmp_path):
    (tmp_path / "sub").mkdir()
    for n in ["a.png", "sub/b.jpg", "notes.txt"]:
        (tmp_path / n).write_bytes(b"x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.png", "b.jpg"]
    assert [p.name for p in expand_inputs([str(tmp_path / "*.png")])] == ["a.png"]
    with pytest.raises(UserError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.webp")])
