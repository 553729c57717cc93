"""toyfaces: determinism, labels, re-rendering from edited labels, scale groups, CLI."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from automod_cli.cli.app import main
from automod_cli.data import toyfaces as tf
from automod_cli.errors import InputError, UserError

SIZE = 32


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB")).copy()


def _read_csv(path) -> tuple[list[str], list[dict]]:
    with open(path, newline="") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames), list(r)


def test_rows_and_images_are_deterministic_by_seed():
    a, b, c = tf.sample_rows(6, seed=3), tf.sample_rows(6, seed=3), tf.sample_rows(6, seed=4)
    assert a == b
    assert a != c
    # row i does not depend on how many rows are drawn
    assert tf.sample_rows(2, seed=3, start=4) == a[4:6]
    ra, rb, rc = tf.render_array(a, SIZE), tf.render_array(b, SIZE), tf.render_array(c, SIZE)
    assert ra.shape == (6, SIZE, SIZE, 3) and ra.dtype == np.uint8
    assert np.array_equal(ra, rb)
    assert not np.array_equal(ra, rc)
    # the faces differ from one another
    assert all(not np.array_equal(ra[0], ra[k]) for k in range(1, 6))


def test_binary_attributes_take_both_values():
    rows = tf.sample_rows(200, seed=0)
    for name in ("middle_smile", "middle_glasses"):
        values = [r[name] for r in rows]
        assert set(values) == {0, 1}
        assert 0.2 < np.mean(values) < 0.8
    assert {r["middle_hair_style"] for r in rows} == set(range(len(tf.HAIR_STYLES)))


def test_generate_writes_images_labels_and_info(tmp_path):
    out = tmp_path / "faces"
    labels = tf.generate(out, 5, size=SIZE, seed=1, workers=1)
    header, rows = _read_csv(labels)
    assert header[0] == "file"
    assert all(c.split("_", 1)[0] in tf.GROUPS for c in header[1:])
    for needed in ("middle_smile", "middle_glasses", "coarse_x", "coarse_tilt", "fine_skin_r"):
        assert needed in header
    assert {g: len(tf.columns_of(g)) > 0 for g in tf.GROUPS} == {g: True for g in tf.GROUPS}
    assert [r["file"] for r in rows] == [f"{i:06d}.png" for i in range(5)]
    assert all(r["middle_smile"] in ("0", "1") and r["middle_glasses"] in ("0", "1") for r in rows)
    info = json.loads((out / tf.INFO_NAME).read_text())
    assert info["size"] == SIZE and info["seed"] == 1 and info["n"] == 5
    for r in rows:
        assert _pixels(out / r["file"]).shape == (SIZE, SIZE, 3)
    # no temporary files left behind
    assert sorted(p.name for p in out.iterdir()) == sorted([r["file"] for r in rows] + ["labels.csv", "toyfaces.json"])


def test_rerender_from_edited_labels(tmp_path):
    src = tmp_path / "a"
    tf.generate(src, 6, size=SIZE, seed=2, workers=1)
    header, rows = _read_csv(src / "labels.csv")
    rows[1]["middle_smile"] = str(1 - int(rows[1]["middle_smile"]))
    rows[3]["coarse_x"] = "0.1000" if float(rows[3]["coarse_x"]) < 0 else "-0.1000"
    rows[4]["fine_bg_r"] = str(255 - int(rows[4]["fine_bg_r"]))
    edited = tmp_path / "edited.csv"
    with open(edited, "w", newline="") as f:
        w = csv.DictWriter(f, header)
        w.writeheader()
        w.writerows(rows)
    # the size comes from --size here (no toyfaces.json beside edited.csv)
    with pytest.raises(UserError, match="--size"):
        tf.rerender(edited, tmp_path / "b", workers=1)
    tf.rerender(edited, tmp_path / "b", size=SIZE, workers=1)
    for k, r in enumerate(rows):
        same = np.array_equal(_pixels(src / r["file"]), _pixels(tmp_path / "b" / r["file"]))
        assert same == (k not in (1, 3, 4)), k
    # the re-rendered set's labels are the edited rows
    assert _read_csv(tmp_path / "b" / "labels.csv")[1] == rows


def test_coarse_factors_move_layout_only():
    row = tf.sample_rows(1, seed=5)[0]
    row.update(coarse_x=-0.1, coarse_y=0.0, fine_texture_amount=0.0)
    moved = dict(row, coarse_x=0.1)
    a, b = tf.render_array([row, moved], 64).astype(np.float64)
    bg = np.array([row["fine_bg_r"], row["fine_bg_g"], row["fine_bg_b"]], dtype=np.float64)

    def face_mask(img):  # pixels clearly unlike the background
        return np.abs(img - bg).sum(-1) > 30

    def centroid_x(img):
        ys, xs = np.nonzero(face_mask(img))
        return xs.mean()

    shift = centroid_x(b) - centroid_x(a)
    assert 0.2 * 64 * 0.6 < shift < 0.2 * 64 * 1.4  # moved by ~0.2 of the width, to the right
    # same colours: the histogram of quantised colours hardly changes
    def colours(img):
        q = (img // 16).astype(np.int64)
        return np.bincount((q[..., 0] * 256 + q[..., 1] * 16 + q[..., 2]).ravel(), minlength=4096)

    ca, cb = colours(a), colours(b)
    assert np.abs(ca - cb).sum() / ca.sum() < 0.15
    # a fine factor changes colours without moving the face
    recoloured = dict(row, fine_skin_r=255 - row["fine_skin_r"], fine_skin_g=255 - row["fine_skin_g"])
    c = tf.render_array([recoloured], 64)[0].astype(np.float64)
    assert abs(centroid_x(c) - centroid_x(a)) < 1.0
    assert np.abs(colours(c) - ca).sum() / ca.sum() > 0.2


def test_smile_and_glasses_change_pixels_near_the_face_centre():
    row = tf.sample_rows(1, seed=7)[0]
    row.update(coarse_x=0.0, coarse_y=0.0, coarse_tilt=0.0, middle_smile=0, middle_glasses=0)
    base, smile, glasses = tf.render_array([row, dict(row, middle_smile=1), dict(row, middle_glasses=1)], 64)
    for other in (smile, glasses):
        diff = np.abs(base.astype(int) - other.astype(int)).sum(-1) > 40
        assert diff.sum() > 10
        ys, xs = np.nonzero(diff)
        assert abs(xs.mean() - 32) < 8
    # the smile is below the glasses
    ys_s = np.nonzero(np.abs(base.astype(int) - smile.astype(int)).sum(-1) > 40)[0].mean()
    ys_g = np.nonzero(np.abs(base.astype(int) - glasses.astype(int)).sum(-1) > 40)[0].mean()
    assert ys_s > ys_g + 4


def test_mix_rows_takes_only_the_given_groups():
    a, b = tf.sample_rows(2, seed=9)
    m = tf.mix_rows(a, b, ("coarse",))
    assert m["file"] == a["file"]
    for f in tf.FACTORS:
        assert m[f.name] == (b[f.name] if f.group == "coarse" else a[f.name])
    with pytest.raises(UserError):
        tf.mix_rows(a, b, ("nope",))


def test_bad_labels_are_reported(tmp_path):
    tf.generate(tmp_path / "a", 2, size=16, seed=0, workers=1)
    header, rows = _read_csv(tmp_path / "a" / "labels.csv")

    def write(rows_, header_=header):
        p = tmp_path / "bad.csv"
        with open(p, "w", newline="") as f:
            w = csv.DictWriter(f, header_, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows_)
        return p

    with pytest.raises(InputError, match="missing column"):
        tf.read_labels(write(rows, [h for h in header if h != "coarse_x"]))
    with pytest.raises(InputError, match="line 3, column middle_smile"):
        tf.read_labels(write([rows[0], dict(rows[1], middle_smile="yes")]))
    with pytest.raises(InputError, match="outside"):
        tf.read_labels(write([dict(rows[0], coarse_size="5")]))
    with pytest.raises(InputError, match="plain name"):
        tf.read_labels(write([dict(rows[0], file="../x.png")]))
    with pytest.raises(InputError, match="twice"):
        tf.read_labels(write([rows[0], rows[0]]))


def test_cli_end_to_end(tmp_path, capsys):
    out = tmp_path / "faces"
    assert main(["data", "toyfaces", "-o", str(out), "--n", "40", "--size", "16", "--seed", "3",
                 "--workers", "2"]) == 0
    assert len(list(out.glob("*.png"))) == 40
    first = _pixels(out / "000000.png")
    assert np.array_equal(first, tf.render_array(tf.sample_rows(1, seed=3), 16)[0])

    # existing output without --overwrite: refused, nothing changed
    capsys.readouterr()
    assert main(["data", "toyfaces", "-o", str(out), "--n", "40", "--size", "16", "--seed", "4"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert np.array_equal(_pixels(out / "000000.png"), first)
    assert main(["data", "toyfaces", "-o", str(out), "--n", "40", "--size", "16", "--seed", "4",
                 "--overwrite"]) == 0
    assert not np.array_equal(_pixels(out / "000000.png"), first)
    # a smaller replacement leaves no stale images of the old set behind
    assert main(["data", "toyfaces", "-o", str(out), "--n", "30", "--size", "16", "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == [f"{i:06d}.png" for i in range(30)]

    # bad arguments: one line, exit 2
    for args in (["--n", "0"], ["--n", "2", "--size", "3"], ["--from-labels", str(tmp_path / "none.csv")]):
        capsys.readouterr()
        assert main(["data", "toyfaces", "-o", str(tmp_path / "x"), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("automod: error:"), err
    assert not (tmp_path / "x").exists()

    # re-render from labels: the size is read from toyfaces.json beside them
    assert main(["data", "toyfaces", "--from-labels", str(out / "labels.csv"), "-o", str(tmp_path / "re")]) == 0
    for name in ("000000.png", "000029.png"):
        assert np.array_equal(_pixels(out / name), _pixels(tmp_path / "re" / name))
