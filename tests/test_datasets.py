"""Training data sets and the resumable, sharded loader."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.data.datasets import (ImageFolderDataset, epoch_order, fade_real_images, in_test_split,
                                       make_loader)
from automod_cli.errors import UserError


def _make_images(folder: Path, n: int, size=(20, 16), seed=0) -> list[str]:
    """n random images: PNGs at the top, a few JPEGs in a sub-folder; returns their relative names."""
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        sub = "sub/" if i % 4 == 3 else ""
        ext = ".jpg" if i % 8 == 7 else ".png"
        name = f"{sub}img{i:03d}{ext}"
        p = folder / name
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(p)
        names.append(name)
    return sorted(names)


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("imgs")
    _make_images(d, 24)
    (d / "notes.txt").write_text("not an image")
    (d / ".img999.png.tmp.png").write_bytes(b"half-written")  # an atomic write in progress
    return d


def test_folder_dataset_reads_recursively(image_dir):
    ds = ImageFolderDataset(image_dir, 8, mirror=False)
    assert len(ds) == 24
    assert "sub/img003.png" in ds.names and "img007.jpg" not in ds.names and "sub/img007.jpg" in ds.names
    x = ds[0]
    assert x.shape == (3, 8, 8) and x.dtype == torch.float32
    assert -1.0 <= x.min() and x.max() <= 1.0
    # centre crop 20x16 -> 16x16, then an antialiased resize to 8: near 2x2 box averages, far from
    # plain subsampling (the images are noise)
    with Image.open(image_dir / ds.names[0]) as im:
        a = np.asarray(im.convert("RGB"), dtype=np.float64)[:, 2:18] / 127.5 - 1
    box = a.reshape(8, 2, 8, 2, 3).mean((1, 3)).transpose(2, 0, 1)
    subsampled = a[::2, ::2].transpose(2, 0, 1)
    assert np.abs(x.numpy() - box).mean() < 0.5 * np.abs(x.numpy() - subsampled).mean()
    ds.set_resolution(16)
    assert ds[0].shape == (3, 16, 16)
    assert ds.skipped == 0


def test_zip_dataset_matches_folder(image_dir, tmp_path):
    z = tmp_path / "imgs.zip"
    with zipfile.ZipFile(z, "w") as f:
        for p in sorted(image_dir.rglob("*")):
            if p.is_file():
                f.write(p, p.relative_to(image_dir).as_posix())
    folder, zipped = ImageFolderDataset(image_dir, 8, mirror=False), ImageFolderDataset(z, 8, mirror=False)
    assert zipped.names == folder.names
    for i in (0, 5, 23):
        assert torch.equal(folder[i], zipped[i])
    # a zip dataset is usable from worker processes
    batch = next(make_loader(zipped, 4, workers=2, seed=0))
    assert batch.shape == (4, 3, 8, 8)


def test_lmdb_dataset(image_dir, tmp_path, monkeypatch):
    lmdb = pytest.importorskip("lmdb")
    db = tmp_path / "lsun"
    env = lmdb.open(str(db), map_size=1 << 24)
    with env.begin(write=True) as txn:
        for i in range(3):
            txn.put(f"key{i}".encode(), (image_dir / f"img{i:03d}.png").read_bytes())
    env.close()
    ds = ImageFolderDataset(db, 8, mirror=False)
    assert ds.names == ["key0", "key1", "key2"]
    assert torch.equal(ds[2], ImageFolderDataset(image_dir, 8, mirror=False)[ds_index(image_dir, "img002.png")])
    monkeypatch.setitem(sys.modules, "lmdb", None)  # as if the optional extra were not installed
    with pytest.raises(UserError, match="pip install"):
        ImageFolderDataset(db, 8)


def ds_index(folder: Path, name: str) -> int:
    return ImageFolderDataset(folder, 8).names.index(name)


def test_unreadable_files_are_skipped_and_counted(tmp_path):
    _make_images(tmp_path, 8)
    (tmp_path / "img001.png").write_bytes((tmp_path / "img001.png").read_bytes()[:60])  # truncated
    (tmp_path / "img002.png").write_bytes(b"this is not a png")
    ds = ImageFolderDataset(tmp_path, 8, mirror=False)
    i1 = ds.names.index("img001.png")
    # two bad files in a row: both replaced by the next good one, deterministically
    assert ds.names[i1 + 1] == "img002.png"
    assert torch.equal(ds[i1], ds.read(i1 + 2))
    assert ds.skipped == 2 and ds.skipped_files == {"img001.png", "img002.png"}
    # through worker processes, the count reaches the dataset in this process
    fresh = ImageFolderDataset(tmp_path, 8, mirror=False)
    stream = make_loader(fresh, 4, workers=2, seed=0)
    batches = [next(stream) for _ in range(4)]  # two epochs: every file is visited
    assert all(torch.isfinite(b).all() for b in batches)
    assert fresh.skipped == 2 and stream.skipped == 2
    # the optional up-front scan drops them
    scanned = ImageFolderDataset(tmp_path, 8)
    failures = scanned.scan()
    assert sorted(Path(n).name for n, _ in failures) == ["img001.png", "img002.png"]
    assert len(scanned) == 6 and "img001.png" not in scanned.names


def test_split_is_deterministic_and_disjoint(image_dir, tmp_path):
    train = ImageFolderDataset(image_dir, 8, split="train", test_fraction=0.3, seed=1)
    test = ImageFolderDataset(image_dir, 8, split="test", test_fraction=0.3, seed=1)
    assert set(train.names).isdisjoint(test.names)
    assert sorted(train.names + test.names) == ImageFolderDataset(image_dir, 8).names
    assert ImageFolderDataset(image_dir, 8, split="test", test_fraction=0.3, seed=1).names == test.names
    # membership depends on the name only, not on the other files
    names = [f"x/{i}.png" for i in range(4000)]
    member = [in_test_split(n, 0.1) for n in names]
    assert 0.08 < np.mean(member) < 0.12
    assert member[:100] == [in_test_split(n, 0.1) for n in names[:100]]
    assert member != [in_test_split(n, 0.1, seed=5) for n in names]
    with pytest.raises(UserError):
        ImageFolderDataset(image_dir, 8, split="validation")


def test_bad_roots_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such"):
        ImageFolderDataset(tmp_path / "missing", 8)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no images"):
        ImageFolderDataset(tmp_path / "empty", 8)
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(UserError, match="folder of images"):
        ImageFolderDataset(tmp_path / "x.txt", 8)


def test_fade_real_images():
    x = torch.randn(2, 3, 8, 8)
    assert torch.equal(fade_real_images(x, 1.0), x)
    low = fade_real_images(x, 0.0)
    block = x[:, :, 2:4, 4:6].mean((2, 3))
    for dy in range(2):
        for dx in range(2):
            assert torch.allclose(low[:, :, 2 + dy, 4 + dx], block, atol=1e-6)
    assert torch.allclose(fade_real_images(x, 0.25), 0.25 * x + 0.75 * low, atol=1e-6)


def test_loader_order_mirror_and_epochs(image_dir):
    ds = ImageFolderDataset(image_dir, 8)
    stream = make_loader(ds, 5, workers=0, seed=3)
    order, flips = epoch_order(len(ds), 3, 0)
    first = next(stream)
    for k in range(5):
        x = ds.read(int(order[k]))
        assert torch.equal(first[k], x.flip(-1) if flips[k] else x)
    assert flips[:24].any() and not flips[:24].all()
    # drop_last: 24 images, batch 5 -> 4 batches per epoch, then epoch 1 starts at index 0
    for _ in range(3):
        next(stream)
    assert stream.state_dict() == {"epoch": 0, "index": 20, "samples": 20, "seed": 3}
    next(stream)
    assert stream.state_dict()["epoch"] == 1 and stream.state_dict()["index"] == 5
    unflipped = make_loader(ImageFolderDataset(image_dir, 8, mirror=False), 5, seed=3)
    plain = next(unflipped)
    assert all(torch.equal(plain[k], ds.read(int(order[k]))) for k in range(5))


def test_loader_resume_gives_the_same_batches(image_dir):
    ds = ImageFolderDataset(image_dir, 8)
    whole = make_loader(ds, 4, workers=2, seed=7)
    expected = [next(whole) for _ in range(9)]  # crosses an epoch boundary (6 batches per epoch)
    part = make_loader(ds, 4, workers=0, seed=7)
    for _ in range(4):
        next(part)
    state = part.state_dict()
    resumed = make_loader(ds, 4, workers=2, seed=7, state=state)
    for k in range(4, 9):
        assert torch.equal(next(resumed), expected[k]), k
    sought = make_loader(ds, 4, workers=0, seed=7)
    sought.seek(7 * 4)
    assert torch.equal(next(sought), expected[7])
    with pytest.raises(UserError, match="seed"):
        make_loader(ds, 4, seed=8, state=state)


def test_resolution_and_batch_changes_continue_the_stream(image_dir):
    ds = ImageFolderDataset(image_dir, 8)
    stream = make_loader(ds, 4, workers=2, seed=1)
    next(stream)
    stream.set_resolution(16)
    stream.set_batch_size(2)
    state = stream.state_dict()
    got = next(stream)
    assert got.shape == (2, 3, 16, 16)
    ref = make_loader(ds, 2, workers=0, seed=1, resolution=16, state=state)
    assert torch.equal(got, next(ref))


def test_ranks_split_each_global_batch(image_dir):
    ds = ImageFolderDataset(image_dir, 8)
    single = make_loader(ds, 6, seed=2)
    ranks = [make_loader(ds, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):  # crosses an epoch boundary
        assert torch.equal(next(single), torch.cat([next(r) for r in ranks]))
    assert ranks[0].state_dict() == single.state_dict()
    with pytest.raises(UserError):
        make_loader(ds, 3, rank=2, world_size=2)
