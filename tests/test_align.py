"""FFHQ alignment and paste-back: geometry on crafted landmarks, real photos from scikit-image.

Most tests use a small --transform-size for speed; the geometry at 1024/4096 is checked without
rendering (the geometry is a pure function).
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("dlib")
skdata = pytest.importorskip("skimage.data")

from automod_cli.align import align_faces, paste_back, paste_back_with_mask  # noqa: E402
from automod_cli.align import landmarks as landmarks_mod  # noqa: E402
from automod_cli.align.ffhq import (  # noqa: E402
    crop_to_photo_matrix, fast_transform_size, ffhq_geometry, photo_to_crop, prepare_source, render_aligned)
from automod_cli.cli.app import main  # noqa: E402
from automod_cli.errors import InputError, UserError  # noqa: E402
from automod_cli.io.images import MAX_PIXELS  # noqa: E402


def crafted_landmarks(eye_left, eye_right, mouth_left, mouth_right) -> np.ndarray:
    """68 points whose eye means and mouth corners are exactly the given points."""
    lm = np.zeros((68, 2))
    lm[:] = (500.0, 500.0)
    lm[36:42] = eye_left
    lm[42:48] = eye_right
    lm[48] = mouth_left
    lm[54] = mouth_right
    return lm


# Eyes (400, 500), (600, 500); mouth corners (430, 700), (570, 700). By hand (spec section 5):
# eye_avg (500, 500), eye_to_eye (200, 0), eye_to_mouth (0, 200);
# x = (200, 0) - (200, 0) * [-1, 1] = (400, 0) -> unit (1, 0) * max(2*200, 1.8*200) = (400, 0);
# y = (0, 400); c = (500, 520); qsize = 800.
LANDMARKS = crafted_landmarks((400, 500), (600, 500), (430, 700), (570, 700))
QUAD = np.array([[100, 120], [100, 920], [900, 920], [900, 120]], dtype=float)


def psnr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return 10 * math.log10(255.0 ** 2 / max(((a - b) ** 2).mean(), 1e-12))


# ------------------------------------------------------------------------------------------
# Geometry (pure): 1024 output, 4096 transform, as FFHQ.

def test_geometry_crop_without_padding():
    g = ffhq_geometry(LANDMARKS, (1000, 1000), 1024, 4096)
    np.testing.assert_allclose(g.quad, QUAD, atol=1e-9)
    assert g.qsize == pytest.approx(800.0)
    assert g.shrink == 1 and g.shrunk_size == (1000, 1000)  # floor(800 / 1024 * 0.5) = 0
    assert g.border == 80                                     # rint(0.1 * 800)
    assert g.crop == (20, 40, 980, 1000)                       # (100-80, 120-80, 900+80, 920+80 -> 1000)
    assert g.pad is None                                       # overflow 0 on every side
    np.testing.assert_allclose(g.final_quad, QUAD - (20, 40), atol=1e-9)
    np.testing.assert_allclose(g.sampled_quad, QUAD, atol=1e-9)
    assert g.transform_size == 4096 and g.output_size == 1024


def test_geometry_reflect_padding_when_quad_overflows():
    g = ffhq_geometry(LANDMARKS, (900, 900), 1024, 4096)
    assert g.crop == (20, 40, 900, 900)                        # right/bottom clipped to the image
    # In the 880x860 crop the quad spans x 80..880, y 80..880: overflow right 80, bottom 100 (> 80-4).
    assert g.pad == (240, 240, 240, 240)                       # max(overflow, rint(0.3 * 800)) on all sides
    np.testing.assert_allclose(g.final_quad, QUAD - (20, 40) + 240, atol=1e-9)
    np.testing.assert_allclose(g.sampled_quad, QUAD, atol=1e-9)
    assert ffhq_geometry(LANDMARKS, (900, 900), 1024, 4096, enable_padding=False).pad is None


def test_geometry_shrink_for_small_outputs():
    g = ffhq_geometry(LANDMARKS, (900, 900), 128, 4096)
    assert g.shrink == 3                                       # floor(800 / 128 * 0.5)
    assert g.shrunk_size == (300, 300)
    assert g.border == 27                                      # rint(0.1 * 800 / 3)
    # quad / 3 spans x 33.3..300, y 40..306.7 -> box (33-27, 40-27, 300, 307+27 -> 300).
    assert g.crop == (6, 13, 300, 300)
    # In the 294x287 crop: bounds 27..294 both ways -> overflow right 27, bottom 34 > 23 -> pad rint(80).
    assert g.pad == (80, 80, 80, 80)
    np.testing.assert_allclose(g.final_quad, QUAD / 3 - (6, 13) + 80, atol=1e-9)
    # The shrunk image's pixel k sits at photo pixel 3k + 1: the quad really sampled is quad + 1.
    np.testing.assert_allclose(g.sampled_quad, QUAD + 1.0, atol=1e-9)


def test_geometry_whole_image_kept_when_the_crop_covers_it():
    g = ffhq_geometry(LANDMARKS, (960, 960), 1024, 4096)
    # Box (20, 40, 980 -> 960, 1000 -> 960) is narrower than 960 -> still a crop.
    assert g.crop == (20, 40, 960, 960)
    lm_small = crafted_landmarks((30, 40), (50, 40), (33, 60), (47, 60))  # quad x 0..80, y 2..82, border 8
    g = ffhq_geometry(lm_small, (80, 80), 64, 256)
    assert g.crop is None                                      # box (-8, -6, 88, 90) clipped = whole image
    assert g.pad == (24, 24, 24, 24)                           # overflow (8, 6, 8, 10) > 4 -> rint(0.3 * 80)


# ------------------------------------------------------------------------------------------
# Pixels.

def test_render_samples_the_quad_where_the_geometry_says():
    # R = x, G = y: bilinear sampling of a linear ramp is exact, so each output pixel tells where it
    # sampled. Landmarks with qsize 160 inside a 250x250 image, no padding.
    lm = crafted_landmarks((105, 110), (145, 110), (111, 150), (139, 150))
    yy, xx = np.mgrid[:250, :250]
    ramp = Image.fromarray(np.stack([xx, yy, np.zeros_like(xx)], -1).astype(np.uint8), "RGB")
    g = ffhq_geometry(lm, ramp.size, 64, 64)
    assert g.pad is None and g.shrink == 1
    out = np.asarray(render_aligned(ramp, g), dtype=np.float64)
    m = crop_to_photo_matrix(g.sampled_quad, 64)
    v, u = np.mgrid[:64, :64]
    expect_x = m[0, 0] * u + m[0, 1] * v + m[0, 2]
    expect_y = m[1, 0] * u + m[1, 1] * v + m[1, 2]
    # Pillow's 8-bit bilinear truncates; a half-pixel error in the convention would shift every value.
    assert (out[..., 0] == np.floor(expect_x + 1e-6)).mean() > 0.99
    assert (out[..., 1] == np.floor(expect_y + 1e-6)).mean() > 0.99
    assert np.abs(out[..., :2] - np.stack([expect_x, expect_y], -1)).max() < 1.0
    # With supersampling + Lanczos the interior still follows the ramp (Lanczos keeps linear functions).
    g4 = ffhq_geometry(lm, ramp.size, 64, 256)
    out4 = np.asarray(render_aligned(ramp, g4), dtype=np.float64)
    assert np.abs(out4[8:-8, 8:-8, 0] - expect_x[8:-8, 8:-8]).max() <= 1.01


def test_padding_reflects_then_fades_to_blur_and_median():
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (900, 900, 3), dtype=np.uint8))
    g = ffhq_geometry(LANDMARKS, photo.size, 128, 512)
    src = np.asarray(prepare_source(photo, g))
    cw, ch = g.crop[2] - g.crop[0], g.crop[3] - g.crop[1]
    p = g.pad
    assert src.shape == (ch + p[1] + p[3], cw + p[0] + p[2], 3)
    # Outermost ring: mask = 1 -> exactly the (single) median colour.
    ring = np.concatenate([src[0], src[-1], src[:, 0], src[:, -1]])
    assert (ring == ring[0]).all()
    # Deep inside (mask <= -1/3: beyond 4/3 of the pad from the padded edge) the photo is untouched.
    shrunk = np.asarray(photo.resize(g.shrunk_size, Image.LANCZOS).crop(g.crop))
    inner = int(math.ceil(p[0] * 4 / 3)) + 1
    np.testing.assert_array_equal(src[inner:-inner, inner:-inner],
                                  shrunk[inner - p[1]:ch - (inner - p[3]), inner - p[0]:cw - (inner - p[2])])


# ------------------------------------------------------------------------------------------
# Real photos.

@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    return Image.fromarray(skdata.astronaut())


@pytest.fixture(scope="module")
def aligned(astronaut):
    return align_faces(astronaut, 256, transform_size=512)[0]


def test_astronaut_face_found_with_a_complete_sidecar(aligned, astronaut):
    assert aligned.image.size == (256, 256) and aligned.image.mode == "RGB"
    sc = aligned.sidecar
    json.dumps(sc)  # JSON-able
    assert sc["source_size"] == [512, 512] and sc["index"] == 1
    assert sc["detector"]["score"] > 0.5
    assert len(sc["landmarks"]) == 68 and len(sc["quad"]) == 4
    assert sc["output_size"] == 256 and sc["transform_size"] == 512
    box = sc["detector"]["box"]
    centre = np.mean(sc["landmarks"], axis=0)
    assert box[0] < centre[0] < box[2] and box[1] < centre[1] < box[3]


def test_aligned_eyes_are_level_and_at_the_ffhq_positions(aligned):
    # Independent check: detect the landmarks again, in the aligned crop.
    from automod_cli.align.landmarks import shared_detector

    crop = np.asarray(aligned.image)
    (box, _score), = shared_detector().detect(crop, upsample=1, min_score=0.5)
    lm = shared_detector().landmarks(crop, box)
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    eye_avg = (eye_l + eye_r) / 2
    e2m = (lm[48] + lm[54]) / 2 - eye_avg
    angle = math.degrees(math.atan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    assert abs(angle) < 3.0
    # FFHQ puts the quad centre 0.1 * eye_to_mouth below the eyes, and the quad's side is
    # max(4 |eye_to_eye|, 3.6 |eye_to_mouth|): the eyes are at most S/4 apart, mouth at most S/3.6 below.
    s = 256
    assert abs(eye_avg[0] - s / 2) < 3.0
    assert abs(eye_avg[1] - (s / 2 - 0.1 * np.hypot(*e2m))) < 3.0
    span = max(4 * np.hypot(*(eye_r - eye_l)), 3.6 * np.hypot(*e2m))
    assert span == pytest.approx(s, rel=0.04)


def similarity(angle_deg: float, scale: float, centre, shift):
    a = math.radians(angle_deg)
    m = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return m, np.asarray(centre, float) + np.asarray(shift, float) - m @ np.asarray(centre, float)


def test_rotated_scaled_shifted_photo_gives_nearly_the_same_crop(aligned, astronaut):
    # The photo rotated 20 degrees, scaled 0.7 and shifted, resampled bicubically.
    m, b = similarity(20, 0.7, (256, 256), (40, -25))
    inv = np.linalg.inv(m)
    off = inv @ (-0.5 * np.ones(2) - b) + 0.5  # Pillow's AFFINE works in pixel-edge coordinates
    moved = astronaut.transform((512, 512), Image.AFFINE, (inv[0, 0], inv[0, 1], off[0], inv[1, 0], inv[1, 1], off[1]),
                                Image.BICUBIC, fillcolor=(128, 128, 128))
    other = align_faces(moved, 256, transform_size=512)[0]
    # The quad follows the face: within 1.5 px of the transformed original quad (side ~120 px).
    q = np.asarray(aligned.sidecar["quad"]) @ m.T + b
    assert np.abs(np.asarray(other.sidecar["quad"]) - q).max() < 1.5
    # Tolerance: mean absolute difference < 6/255 over the crop, PSNR > 28 dB over the central half
    # (measured: 3.0 and 33 dB; the moved photo lost detail in the 0.7 downscale).
    x = np.asarray(aligned.image, dtype=np.float64)
    y = np.asarray(other.image, dtype=np.float64)
    assert np.abs(x - y).mean() < 6.0
    assert psnr(x[64:192, 64:192], y[64:192, 64:192]) > 28.0


@pytest.mark.parametrize("name", ["chelsea", "coffee"])
def test_photos_without_faces_raise_input_error(name):
    with pytest.raises(InputError, match="no face found"):
        align_faces(Image.fromarray(getattr(skdata, name)()), 64, transform_size=128)


def test_all_faces_ordered_by_size_and_min_score(astronaut):
    # At upsample 1 dlib also fires (score ~0.1) on the mission patch: --min-score drops it.
    found = align_faces(astronaut, 64, faces="all", transform_size=128, min_score=0.0)
    assert len(found) >= 2
    sizes = [f.sidecar["qsize"] for f in found]
    assert sizes == sorted(sizes, reverse=True)
    assert [f.sidecar["index"] for f in found] == list(range(1, len(found) + 1))
    strict = align_faces(astronaut, 64, faces="all", transform_size=128, min_score=0.5)
    assert len(strict) == 1 and strict[0].sidecar["detector"]["score"] >= 0.5


def test_tiny_face_needs_upsampling(astronaut):
    tiny = astronaut.resize((128, 128), Image.LANCZOS)  # the face is ~22 px wide
    with pytest.raises(InputError, match="--upsample"):
        align_faces(tiny, 64, transform_size=128, upsample=0)
    found = align_faces(tiny, 64, transform_size=128, upsample=2)
    assert found[0].image.size == (64, 64)


def test_detector_upsampling_is_bounded_by_the_pixel_limit(astronaut, monkeypatch):
    import automod_cli.align.pipeline as pipeline

    monkeypatch.setattr(pipeline, "MAX_PIXELS", 512 * 512 * 2)  # 4x the photo's pixels would exceed it
    with pytest.raises(InputError, match="lower --upsample"):
        align_faces(astronaut, 64, transform_size=128, upsample=1)
    assert len(align_faces(astronaut, 64, transform_size=128, upsample=0)) == 1


def test_face_at_the_border_is_padded(astronaut):
    cut = astronaut.crop((160, 60, 512, 512))  # the face now touches the top-left corner region
    face = align_faces(cut, 128, transform_size=256)[0]
    assert face.sidecar["pad"] is not None
    a = np.asarray(face.image, dtype=np.float64)
    assert a[:, :8].std() > 0.5  # padded area is filled (reflected and blurred), not a flat black band


def test_fast_transform_is_close_to_the_plain_one(astronaut):
    plain = align_faces(astronaut, 256, transform_size=4096)[0]
    fast = align_faces(astronaut, 256, transform_size=4096, fast=True)[0]
    assert fast.sidecar["transform_used"] < 4096
    assert psnr(plain.image, fast.image) > 40.0
    g = ffhq_geometry(LANDMARKS, (1000, 1000), 256, 4096)  # qsize 800 -> 3 * 800 = 2400
    assert fast_transform_size(g) == 2400


# ------------------------------------------------------------------------------------------
# Paste-back.

def test_paste_back_changes_nothing_outside_the_mask(aligned, astronaut):
    edited = Image.fromarray(255 - np.asarray(aligned.image))
    out, mask = paste_back_with_mask(astronaut, edited, aligned.sidecar)
    assert out.size == astronaut.size
    before, after = np.asarray(astronaut), np.asarray(out)
    np.testing.assert_array_equal(after[mask == 0], before[mask == 0])
    assert (mask == 0).mean() > 0.7
    # The face changed: the eyes' centre lies in the full-weight part of the mask.
    eye = np.mean(np.asarray(aligned.sidecar["landmarks"])[36:48], axis=0).round().astype(int)
    assert mask[eye[1], eye[0]] == pytest.approx(1.0)
    assert np.abs(after[mask > 0.99].astype(int) - before[mask > 0.99]).mean() > 50


def test_paste_back_of_the_unmodified_crop_restores_the_face(aligned, astronaut):
    out, mask = paste_back_with_mask(astronaut, aligned.image, aligned.sidecar)
    sel = mask > 0.99
    assert sel.sum() > 2000
    # Measured 37 dB: the crop went photo -> 512 transform -> 256 -> photo again.
    assert psnr(np.asarray(out)[sel], np.asarray(astronaut)[sel]) > 32.0
    # Crops at another size (a model's resolution) map the same way.
    small = aligned.image.resize((64, 64), Image.LANCZOS)
    out64, mask64 = paste_back_with_mask(astronaut, small, aligned.sidecar)
    assert psnr(np.asarray(out64)[sel], np.asarray(astronaut)[sel]) > 25.0


def test_paste_back_refuses_a_photo_of_another_size(aligned, astronaut):
    with pytest.raises(ValueError, match="sidecar"):
        paste_back(astronaut.resize((256, 256)), aligned.image, aligned.sidecar)


def test_paste_back_landmark_mapping_round_trips(aligned):
    lm = np.asarray(aligned.sidecar["landmarks"])
    quad = np.asarray(aligned.sidecar["sampled_quad"])
    crop = photo_to_crop(lm, quad, 256)
    m = crop_to_photo_matrix(quad, 256)
    np.testing.assert_allclose(crop @ m[:2, :2].T + m[:2, 2], lm, atol=1e-9)


# ------------------------------------------------------------------------------------------
# Bad input and the CLI.

def bomb_png(path: Path, width: int, height: int) -> None:
    """A valid tiny PNG whose header claims ``width`` x ``height`` (Pillow refuses it on open)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16))
                     + chunk(b"IEND", b""))


def exif_rotated_jpeg(img: Image.Image, path: Path) -> None:
    """Store the pixels rotated, with EXIF orientation 6 (display rotated 90 degrees clockwise)."""
    stored = img.transpose(Image.ROTATE_90)  # counter-clockwise; the viewer turns it back
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=95, exif=exif)


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory, astronaut) -> Path:
    d = tmp_path_factory.mktemp("photos")
    astronaut.save(d / "astronaut.png")
    astronaut.convert("L").save(d / "gray.png")
    rgba = astronaut.convert("RGBA")
    rgba.putalpha(200)
    rgba.save(d / "rgba.png")
    exif_rotated_jpeg(astronaut, d / "rotated.jpg")
    Image.fromarray(skdata.chelsea()).save(d / "chelsea.jpg")
    Image.fromarray(skdata.coffee()).save(d / "coffee.png")
    bomb_png(d / "huge.png", 40000, 40000)
    return d


def test_cli_align_folder_with_workers(photo_dir, tmp_path, capsys):
    out = tmp_path / "aligned"
    code = main(["align", str(photo_dir), "-o", str(out), "--size", "64", "--transform-size", "128",
                 "--workers", "2"])
    err = capsys.readouterr().err
    assert code == 1  # some photos were skipped
    for name in ("astronaut", "gray", "rgba", "rotated"):
        assert Image.open(out / f"{name}.png").size == (64, 64)
        assert json.loads((out / f"{name}.json").read_text())["index"] == 1
    for name in ("chelsea", "coffee", "huge"):
        assert not (out / f"{name}.png").exists()
    assert "3 photos skipped" in err
    assert "chelsea.jpg: no face found" in err and "coffee.png: no face found" in err
    assert "huge.png: image too large" in err and str(MAX_PIXELS) in err
    assert "Traceback" not in err
    # EXIF: aligned as displayed; landmarks in displayed coordinates match the upright photo's.
    upright = json.loads((out / "astronaut.json").read_text())
    turned = json.loads((out / "rotated.json").read_text())
    assert turned["source_size"] == [512, 512]
    assert np.abs(np.asarray(turned["landmarks"]) - np.asarray(upright["landmarks"])).mean() < 2.0
    gray = json.loads((out / "gray.json").read_text())
    assert np.abs(np.asarray(gray["quad"]) - np.asarray(upright["quad"])).max() < 3.0


def test_cli_align_all_faces_and_overwrite(photo_dir, tmp_path, capsys):
    out = tmp_path / "all"
    # --min-score 0: also the weak detection on the mission patch (the default with --faces all drops it).
    args = ["align", str(photo_dir / "astronaut.png"), "-o", str(out), "--size", "32", "--transform-size", "64",
            "--faces", "all", "--min-score", "0", "--workers", "1"]
    assert main(args) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names[:4] == ["astronaut_01.json", "astronaut_01.png", "astronaut_02.json", "astronaut_02.png"]
    before = (out / "astronaut_01.png").read_bytes()
    capsys.readouterr()
    assert main(args) == 1  # nothing replaced without --overwrite
    assert "exists already" in capsys.readouterr().err
    assert (out / "astronaut_01.png").read_bytes() == before
    assert main(args + ["--overwrite"]) == 0
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_cli_paste_roundtrip(photo_dir, tmp_path, capsys):
    out = tmp_path / "a"
    assert main(["align", str(photo_dir / "astronaut.png"), "-o", str(out), "--size", "128",
                 "--transform-size", "256", "--workers", "1"]) == 0
    crop = Image.open(out / "astronaut.png").convert("RGB")
    Image.fromarray(255 - np.asarray(crop)).save(tmp_path / "edited.png")
    result = tmp_path / "pasted.png"
    args = ["paste", str(tmp_path / "edited.png"), "--into", str(photo_dir / "astronaut.png"),
            "--sidecar", str(out / "astronaut.json"), "-o", str(result)]
    assert main(args) == 0
    photo = np.asarray(Image.open(photo_dir / "astronaut.png").convert("RGB"))
    pasted = np.asarray(Image.open(result).convert("RGB"))
    changed = (pasted != photo).any(-1)
    assert 0.02 < changed.mean() < 0.3
    quad = np.asarray(json.loads((out / "astronaut.json").read_text())["quad"])
    ys, xs = np.nonzero(changed)
    assert xs.min() >= quad[:, 0].min() - 2 and xs.max() <= quad[:, 0].max() + 2
    assert ys.min() >= quad[:, 1].min() - 2 and ys.max() <= quad[:, 1].max() + 2
    capsys.readouterr()
    assert main(args) == 2 and "exists already" in capsys.readouterr().err
    # Wrong photo for this sidecar: one line, exit 2.
    assert main(["paste", str(tmp_path / "edited.png"), "--into", str(photo_dir / "chelsea.jpg"),
                 "--sidecar", str(out / "astronaut.json"), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "chelsea.jpg" in err and "sidecar" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad.json").write_text("{not json")
    assert main(["paste", str(tmp_path / "edited.png"), "--into", str(photo_dir / "astronaut.png"),
                 "--sidecar", str(tmp_path / "bad.json"), "-o", str(tmp_path / "y.png")]) == 2
    assert "bad.json: not an alignment sidecar" in capsys.readouterr().err


def test_missing_landmark_model_names_the_package(monkeypatch, photo_dir, tmp_path, capsys):
    monkeypatch.setattr(landmarks_mod, "MODELS_PACKAGE", "automod_no_such_models_package")
    with pytest.raises(UserError, match="face-recognition-models"):
        landmarks_mod.landmark_model_path()
    code = main(["align", str(photo_dir / "astronaut.png"), "-o", str(tmp_path / "o"), "--workers", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "face-recognition-models" in err[0]


def test_landmark_model_found_without_importing_the_package():
    import sys

    sys.modules.pop("face_recognition_models", None)
    path = landmarks_mod.landmark_model_path()
    assert path.is_file() and path.name == "shape_predictor_68_face_landmarks.dat"
    assert "face_recognition_models" not in sys.modules  # its __init__ needs the removed pkg_resources
