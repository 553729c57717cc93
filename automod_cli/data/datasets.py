"""Training images: a dataset over a folder, a zip or an LMDB, and a resumable, sharded loader.

``ImageFolderDataset`` lists the files once (relative names only, no pixels are cached) and decodes
on demand, centre-cropped and resized with Lanczos to the requested resolution, as float32
[3, R, R] in [-1, 1]. An unreadable file never stops training: the sample is replaced by the next
readable one (deterministically) and the file is recorded in ``ds.skipped_files``.

``make_loader`` returns an ``ImageStream``: an endless iterator of batches for one rank, whose order
is a pure function of (seed, epoch, position), so a resumed run sees exactly the batches an
uninterrupted one would have seen:

    stream = make_loader(ds, batch_size=32, workers=4, seed=0, rank=r, world_size=w)
    x = next(stream)                          # [32, 3, R, R] for this rank
    checkpoint["loader"] = stream.state_dict()  # {"epoch": e, "index": i, "samples": n, "seed": s}
    ...                                       # after a restart:
    stream = make_loader(ds, 32, 4, seed=0, rank=r, world_size=w, state=checkpoint["loader"])
    # or, with a constant batch size, stream.seek(samples_seen)

Epoch ``e`` visits every sample once in the order ``randperm(N)`` seeded by (seed, e); a global batch
is the next ``batch_size * world_size`` entries of that order and rank ``r`` takes the r-th slice of
``batch_size`` of them. The mirror flag of each entry is drawn with the order, so augmentation
resumes exactly too. ``stream.set_resolution(r)`` and ``stream.set_batch_size(b)`` take effect at the
next batch (prefetched batches are discarded).
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import random
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, UserError
from ..io.images import IMAGE_SUFFIXES, MAX_PIXELS, pil_to_tensor, to_rgb

Key = tuple  # (index, flip, resolution)


# ----------------------------------------------------------------------------------------------
# Sources: where the encoded bytes of each image come from


class _FolderSource:
    kind = "folder"

    def __init__(self, root: Path):
        self.root = root
        names = []
        for p in root.rglob("*"):
            rel = p.relative_to(root)
            # hidden files include the temporary files of atomic writes in progress
            if p.suffix.lower() in IMAGE_SUFFIXES and not any(part.startswith(".") for part in rel.parts):
                if p.is_file():
                    names.append(rel.as_posix())
        self.names = sorted(names)

    def read(self, name: str) -> bytes:
        return (self.root / name).read_bytes()


class _ZipSource:
    kind = "zip"

    def __init__(self, path: Path):
        self.path = path
        try:
            with zipfile.ZipFile(path) as z:
                infos = z.infolist()
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"not a readable zip file ({e})", path) from None
        self.names = sorted(
            i.filename for i in infos
            if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_SUFFIXES
            and not any(part.startswith(".") or part == "__MACOSX" for part in Path(i.filename).parts))
        self._zip = None
        self._pid = None

    def read(self, name: str) -> bytes:
        if self._zip is None or self._pid != os.getpid():  # one handle per (worker) process
            self._zip, self._pid = zipfile.ZipFile(self.path), os.getpid()
        return self._zip.read(name)

    def __getstate__(self):
        return {**self.__dict__, "_zip": None, "_pid": None}


class _LmdbSource:
    """LSUN's LMDB: keys are image ids, values the encoded images (webp or jpeg)."""

    kind = "lmdb"

    def __init__(self, path: Path):
        self.path = path
        env = self._open()
        with env.begin(write=False) as txn:
            self.names = sorted(k.decode("utf-8", "surrogateescape") for k in txn.cursor().iternext(values=False))
        env.close()
        self._env = None
        self._pid = None

    def _open(self):
        try:
            import lmdb
        except ImportError:
            raise UserError("reading LMDB data needs the 'lmdb' package: pip install 'automod-cli[lmdb]'",
                            self.path) from None
        try:
            return lmdb.open(str(self.path), readonly=True, lock=False, readahead=False, meminit=False,
                             max_readers=256, subdir=self.path.is_dir())
        except lmdb.Error as e:
            raise InputError(f"not a readable LMDB database ({e})", self.path) from None

    def read(self, name: str) -> bytes:
        if self._env is None or self._pid != os.getpid():
            self._env, self._pid = self._open(), os.getpid()
        with self._env.begin(write=False) as txn:
            data = txn.get(name.encode("utf-8", "surrogateescape"))
        if data is None:
            raise OSError("key not in the database")
        return bytes(data)

    def __getstate__(self):
        return {**self.__dict__, "_env": None, "_pid": None}


def _open_source(root: Path):
    if not root.exists():
        raise UserError("no such file or folder", root)
    if root.is_dir():
        if (root / "data.mdb").is_file():
            return _LmdbSource(root)
        return _FolderSource(root)
    if root.suffix.lower() == ".mdb":
        return _LmdbSource(root)
    if zipfile.is_zipfile(root):
        return _ZipSource(root)
    raise UserError("training data must be a folder of images, a .zip of images or an LMDB database", root)


def decode_image(data: bytes, name: str = "") -> Image.Image:
    """Encoded bytes -> 8-bit RGB PIL image (EXIF-transposed); InputError when unreadable."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"image too large (refused above {MAX_PIXELS} pixels)", name) from None
    except UnidentifiedImageError:
        raise InputError("not an image (or a format Pillow cannot read)", name) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(f"unreadable or truncated image ({e})", name) from None


def square_resize(im: Image.Image, resolution: int) -> Image.Image:
    """Centre-crop to a square, then resize with Lanczos (antialiased) when the size differs."""
    w, h = im.size
    if w != h:
        s = min(w, h)
        im = im.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    if im.size[0] != resolution:
        im = im.resize((resolution, resolution), Image.LANCZOS)
    return im


def in_test_split(name: str, test_fraction: float, seed: int = 0) -> bool:
    """Whether a file (by relative name) belongs to the test split: a hash, stable across machines."""
    h = hashlib.sha256(f"{seed}\0{name}".encode("utf-8", "surrogateescape")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64 < test_fraction


# ----------------------------------------------------------------------------------------------
# The dataset


class ImageFolderDataset(torch.utils.data.Dataset):
    """Images from a folder (recursive), a .zip or an LMDB, as float32 [3, R, R] in [-1, 1].

    ``split``: None (all files), "train" or "test"; a file is in the test split when a hash of
    (seed, its relative name) falls below ``test_fraction``, so the split does not depend on which
    other files exist. ``mirror``: random horizontal flips (on by default).
    """

    def __init__(self, root: str | Path, resolution: int, mirror: bool = True, split: str | None = None,
                 test_fraction: float = 0.05, seed: int = 0):
        if split not in (None, "train", "test"):
            raise UserError(f"split must be 'train', 'test' or None, got {split!r}")
        if not 0.0 <= test_fraction < 1.0:
            raise UserError(f"test fraction must be in [0, 1), got {test_fraction}")
        self.root = Path(root)
        self.source = _open_source(self.root)
        names = self.source.names
        if split is not None:
            want_test = split == "test"
            names = [n for n in names if in_test_split(n, test_fraction, seed) == want_test]
        if not names:
            what = f" in the {split} split" if split else ""
            raise UserError(f"no images found{what}", self.root)
        self.names: list[str] = names
        self.split, self.test_fraction, self.seed = split, test_fraction, seed
        self.mirror = mirror
        self.resolution = self._check_resolution(resolution)
        self.skipped_files: set[str] = set()
        self._rng = random.Random(seed)

    @staticmethod
    def _check_resolution(resolution: int) -> int:
        if int(resolution) < 1:
            raise UserError(f"resolution must be positive, got {resolution}")
        return int(resolution)

    @property
    def skipped(self) -> int:
        """How many distinct unreadable files were met (and replaced by readable ones) so far."""
        return len(self.skipped_files)

    def set_resolution(self, resolution: int) -> None:
        self.resolution = self._check_resolution(resolution)

    def __len__(self) -> int:
        return len(self.names)

    def __repr__(self) -> str:
        return (f"ImageFolderDataset({str(self.root)!r}, {self.source.kind}, {len(self)} images, "
                f"resolution={self.resolution}, mirror={self.mirror}, split={self.split!r})")

    def read(self, index: int, resolution: int | None = None) -> torch.Tensor:
        """Decode one file (no substitution): float32 [3, R, R]; InputError when unreadable."""
        name = self.names[index]
        try:
            data = self.source.read(name)
        except (OSError, KeyError) as e:
            raise InputError(f"cannot read ({e})", self._display(name)) from None
        im = decode_image(data, self._display(name))
        return pil_to_tensor(square_resize(im, resolution or self.resolution))

    def load(self, index: int, flip: bool, resolution: int | None = None) -> tuple[torch.Tensor, list[str]]:
        """The sample at ``index``, or the next readable one after it; also the unreadable names met."""
        bad: list[str] = []
        n = len(self.names)
        for step in range(n):
            k = (index + step) % n
            name = self.names[k]
            if name in self.skipped_files:
                continue
            try:
                x = self.read(k, resolution)
            except InputError:
                bad.append(name)
                self.skipped_files.add(name)
                continue
            return (x.flip(-1) if flip else x), bad
        raise UserError("none of the images could be read", self.root)

    def __getitem__(self, key) -> torch.Tensor:
        """``ds[i]``: sample i with a random flip (when mirroring); ``ds[(i, flip, resolution)]``: exact."""
        if isinstance(key, tuple):
            index, flip, resolution = key
        else:
            index, flip, resolution = int(key), self.mirror and self._rng.random() < 0.5, None
        return self.load(index, bool(flip), resolution)[0]

    def scan(self) -> list[tuple[str, str]]:
        """Decode every file once; drop the unreadable ones from the list and return (name, reason).

        Optional: without it, unreadable files are found (and skipped) when first used.
        """
        good, failures = [], []
        for k, name in enumerate(self.names):
            try:
                self.read(k, resolution=4)
                good.append(name)
            except InputError as e:
                failures.append((name, str(e)))
                self.skipped_files.add(name)
        if not good:
            raise UserError("none of the images could be read", self.root)
        self.names = good
        return failures

    def _display(self, name: str) -> str:
        return str(self.root / name) if self.source.kind == "folder" else f"{self.root}:{name}"


# ----------------------------------------------------------------------------------------------
# Fades


def fade_real_images(x: torch.Tensor, alpha: float) -> torch.Tensor:
    """``alpha·x + (1−alpha)·upsample(downsample(x))`` (2x average pool down, nearest up), as real
    images are blended while a new resolution fades in."""
    if alpha >= 1.0:
        return x
    low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
    if alpha <= 0.0:
        return low
    return torch.lerp(low, x, float(alpha))


# ----------------------------------------------------------------------------------------------
# The loader


def epoch_order(n: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The visiting order of epoch ``epoch`` and the mirror flag of each position."""
    g = torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))
    order = torch.randperm(n, generator=g)
    flips = torch.rand(n, generator=g) < 0.5
    return order, flips


class _BatchPlan:
    """The deterministic sequence of global batches: positions (epoch, index) and their keys."""

    def __init__(self, n: int, seed: int, mirror: bool, drop_last: bool):
        self.n, self.seed, self.mirror, self.drop_last = n, seed, mirror, drop_last
        self._cache: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def order(self, epoch: int):
        if epoch not in self._cache:
            if len(self._cache) > 2:
                self._cache.clear()
            self._cache[epoch] = epoch_order(self.n, self.seed, epoch)
        return self._cache[epoch]

    def next_span(self, epoch: int, index: int, global_batch: int) -> tuple[int, int, int]:
        """(epoch, start, stop) of the next global batch from position (epoch, index)."""
        if self.drop_last:
            if global_batch > self.n:
                raise UserError(f"a global batch of {global_batch} is larger than the data set ({self.n} images)")
            if index + global_batch > self.n:
                epoch, index = epoch + 1, 0
            return epoch, index, index + global_batch
        if index >= self.n:
            epoch, index = epoch + 1, 0
        return epoch, index, min(self.n, index + global_batch)

    def keys(self, epoch: int, start: int, stop: int, resolution: int) -> list[Key]:
        order, flips = self.order(epoch)
        return [(int(order[p]), bool(flips[p]) and self.mirror, resolution) for p in range(start, stop)]


class _RankBatches:
    """Batch sampler handed to the DataLoader: this rank's keys, from a start position, forever."""

    def __init__(self, plan: _BatchPlan, rank: int, world_size: int):
        self.plan, self.rank, self.world_size = plan, rank, world_size
        self.epoch, self.index, self.batch_size, self.resolution = 0, 0, 1, 1

    def __iter__(self) -> Iterator[list[Key]]:
        epoch, index = self.epoch, self.index
        b, w, r, res = self.batch_size, self.world_size, self.rank, self.resolution
        while True:
            epoch, start, stop = self.plan.next_span(epoch, index, b * w)
            yield self.plan.keys(epoch, min(stop, start + r * b), min(stop, start + (r + 1) * b), res)
            index = stop


def _collate(items: Sequence[tuple[torch.Tensor, list[str]]]) -> tuple[torch.Tensor, list[str]]:
    return torch.stack([x for x, _ in items]), [name for _, bad in items for name in bad]


class _Loading(torch.utils.data.Dataset):
    """What the workers see: keys in, (image, unreadable names met) out."""

    def __init__(self, ds: ImageFolderDataset):
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, key: Key):
        index, flip, resolution = key
        return self.ds.load(index, flip, resolution)


def _worker_init(_worker_id: int) -> None:
    torch.set_num_threads(1)  # decoding is per-sample work; keep the cores for the other workers
    # A SIGTERM sent to the whole process group (a scheduler, `kill -- -PGID`) must reach the trainer
    # alone, which writes its final checkpoint and then shuts the workers down; a worker that died
    # first would crash the trainer before it could save.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class ImageStream:
    """An endless, resumable iterator of this rank's batches (see the module docstring)."""

    def __init__(self, ds: ImageFolderDataset, batch_size: int, workers: int = 0, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = True, resolution: int | None = None,
                 pin_memory: bool | None = None, prefetch_factor: int = 2, state: dict | None = None):
        if not 0 <= rank < world_size:
            raise UserError(f"rank {rank} is not in [0, {world_size})")
        if not drop_last and world_size > 1:
            raise UserError("drop_last=False would give ranks unequal batches; use drop_last=True with several ranks")
        self.ds, self.seed, self.rank, self.world_size = ds, int(seed), rank, world_size
        self.plan = _BatchPlan(len(ds), self.seed, ds.mirror, drop_last)
        self.batches = _RankBatches(self.plan, rank, world_size)
        self.batch_size = self._check_batch(batch_size)
        self.resolution = ds.resolution if resolution is None else ds._check_resolution(resolution)
        self.epoch, self.index, self.samples = 0, 0, 0
        if state is not None:
            self.load_state_dict(state)
        workers = max(0, int(workers))
        kw = {}
        if workers > 0:
            kw = dict(persistent_workers=True, prefetch_factor=prefetch_factor, worker_init_fn=_worker_init)
        self.loader = torch.utils.data.DataLoader(
            _Loading(ds), batch_sampler=self.batches, num_workers=workers, collate_fn=_collate,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory, **kw)
        self._it = None

    def _check_batch(self, b: int) -> int:
        if int(b) < 1:
            raise UserError(f"batch size must be at least 1, got {b}")
        return int(b)

    # -- position -------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Where the stream stands: the next batch starts at position ``index`` of epoch ``epoch``;
        ``samples`` global samples were delivered so far (all ranks together)."""
        return {"epoch": self.epoch, "index": self.index, "samples": self.samples, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise UserError(f"the saved data order used seed {state['seed']}, this run uses {self.seed}")
        self.epoch, self.index, self.samples = int(state["epoch"]), int(state["index"]), int(state.get("samples", 0))
        self._it = None

    def seek(self, samples: int) -> None:
        """Restart at a global sample count, assuming the current batch size was used throughout."""
        g = self.batch_size * self.world_size
        if samples % g:
            raise UserError(f"sample count {samples} is not a multiple of the global batch {g}")
        if self.plan.drop_last:
            per_epoch = (self.plan.n // g) * g
            if per_epoch == 0:
                raise UserError(f"a global batch of {g} is larger than the data set ({self.plan.n} images)")
        else:
            per_epoch = self.plan.n
            if self.plan.n % g:
                raise UserError("seek() needs drop_last=True or a batch that divides the data set; "
                                "use state_dict()/load_state_dict()")
        self.epoch, self.index, self.samples = samples // per_epoch, samples % per_epoch, samples
        self._it = None

    def set_resolution(self, resolution: int) -> None:
        resolution = self.ds._check_resolution(resolution)
        if resolution != self.resolution:
            self.resolution, self._it = resolution, None

    def set_batch_size(self, batch_size: int) -> None:
        batch_size = self._check_batch(batch_size)
        if batch_size != self.batch_size:
            self.batch_size, self._it = batch_size, None

    @property
    def skipped(self) -> int:
        return self.ds.skipped

    # -- iteration ------------------------------------------------------------------------------
    def __iter__(self) -> "ImageStream":
        return self

    def __next__(self) -> torch.Tensor:
        if self._it is None:  # (re)start the workers' stream at the current position
            b = self.batches
            b.epoch, b.index, b.batch_size, b.resolution = self.epoch, self.index, self.batch_size, self.resolution
            self._it = iter(self.loader)
        x, bad = next(self._it)
        self.ds.skipped_files.update(bad)  # the workers' discoveries, gathered in this process
        epoch, start, stop = self.plan.next_span(self.epoch, self.index, self.batch_size * self.world_size)
        self.epoch, self.index = epoch, stop
        self.samples += stop - start
        return x

    def close(self) -> None:
        """Stop the worker processes."""
        self._it = None
        self.loader = None  # type: ignore[assignment]


def make_loader(ds: ImageFolderDataset, batch_size: int, workers: int = 0, seed: int = 0, rank: int = 0,
                world_size: int = 1, drop_last: bool = True, **kw) -> ImageStream:
    """An endless iterator of [batch_size, 3, R, R] batches for ``rank`` of ``world_size``.

    ``batch_size`` is per rank (the global batch is ``batch_size * world_size``); the order depends
    only on (seed, epoch), so ``state=stream.state_dict()`` resumes it exactly. Worker processes are
    persistent; memory is pinned when CUDA is available. Other keywords: ``resolution``,
    ``pin_memory``, ``prefetch_factor``, ``state``.
    """
    return ImageStream(ds, batch_size, workers, seed, rank, world_size, drop_last, **kw)
