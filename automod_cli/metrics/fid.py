"""Fréchet Inception Distance with the TF-compatible protocol (the one pytorch-fid and NVlabs follow).

Images are 8-bit RGB (generated images quantised with round-half-up), resized to 299x299 bilinearly
without antialiasing, fed to the FID Inception-v3; the 2048-d pool3 features are summarised by their
float64 mean and N-1 covariance. The matrix square root in the distance is computed with scipy's
``sqrtm`` and cross-checked with a symmetric eigen-decomposition; a large imaginary part, a non-finite
statistic or a disagreement between the two fails loudly.

Reference statistics are cached as ``.npz`` files (mu, sigma, n, key, protocol) under a key made of the
images' content, the protocol and the Inception weights' hash, written atomically.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..errors import InputError, UserError
from ..io.atomic import atomic_path
from ..io.images import IMAGE_SUFFIXES, expand_inputs, open_image, to_rgb, to_uint8
from .inception import FEATURE_DIM, FIDInception, load_fid_inception, resize_for_inception
from .weights import WeightsFile, load_state_dict, resolve

PROTOCOL = {
    "network": "inception-v3 tf-2015-12-05 pool3 (2048-d)",
    "input": "uint8 RGB; generated images quantised round-half-up",
    "resize": "bilinear to 299x299, align_corners=False, no antialias",
    "statistics": "float64 mean and covariance (N-1)",
}
PROTOCOL_ID = "fid-tf-v1"

Progress = Callable[[int], None]


# ----------------------------------------------------------------------------------------------
# Fréchet distance


@dataclass(frozen=True)
class FrechetResult:
    """The distance and the two traces of sqrt(Σ1Σ2) it was cross-checked with."""

    value: float
    trace_sqrt_scipy: float
    trace_sqrt_eigen: float
    diagonal_offset: float  # 0, or the epsilon added to both covariances when sqrtm was not finite


def _check_stats(mu: np.ndarray, sigma: np.ndarray, label: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise InputError(f"statistics of the wrong shape: mu {mu.shape}, sigma {sigma.shape} "
                         f"(expected (D,) and (D, D))", label)
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise InputError("non-finite value in the statistics (NaN or inf)", label)
    return mu, sigma


def _trace_sqrt_eigen(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(Σ1Σ2) as tr sqrt(S Σ2 S), S = Σ1^½: a symmetric PSD problem, so eigenvalues are real."""
    w, v = np.linalg.eigh((sigma1 + sigma1.T) / 2)
    root1 = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = root1 @ sigma2 @ root1
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2), 0, None)).sum())


def frechet_distance(mu1, sigma1, mu2, sigma2, eps: float = 1e-6, labels=("first", "second"),
                     rtol: float = 1e-4) -> FrechetResult:
    """``|μ1−μ2|² + tr(Σ1 + Σ2 − 2·sqrt(Σ1Σ2))`` in float64, the square root computed two ways.

    The reported value uses scipy's ``sqrtm`` (the reference implementations' choice); the eigen route
    must agree to ``rtol`` of ``tr Σ1 + tr Σ2`` (plus a tiny absolute slack) or this raises.
    """
    from scipy import linalg

    mu1, sigma1 = _check_stats(mu1, sigma1, labels[0])
    mu2, sigma2 = _check_stats(mu2, sigma2, labels[1])
    if mu1.shape != mu2.shape:
        raise InputError(f"statistics of different dimensions: {mu1.shape[0]} and {mu2.shape[0]}", labels[1])
    diff = mu1 - mu2
    offset = 0.0
    root = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(root).all():
        # A singular product: regularise both covariances, as the reference implementations do.
        offset = eps
        eye = np.eye(sigma1.shape[0]) * eps
        sigma1, sigma2 = sigma1 + eye, sigma2 + eye
        root = linalg.sqrtm(sigma1 @ sigma2)
        if not np.isfinite(root).all():
            raise UserError("the matrix square root of Σ1Σ2 is not finite even after adding "
                            f"{eps}·I; the statistics are degenerate")
    if np.iscomplexobj(root):
        imag = float(np.abs(np.diagonal(root).imag).max())
        if imag > 1e-3:
            raise UserError(f"the matrix square root of Σ1Σ2 has a large imaginary component ({imag:.3g}); "
                            "the covariances are degenerate (too few images?)")
        root = root.real
    trace_scipy = float(np.trace(root))
    trace_eigen = _trace_sqrt_eigen(sigma1, sigma2)
    scale = float(np.trace(sigma1) + np.trace(sigma2))
    if abs(trace_scipy - trace_eigen) > rtol * scale + 1e-9:
        raise UserError(f"the two computations of tr sqrt(Σ1Σ2) disagree ({trace_scipy!r} by sqrtm, "
                        f"{trace_eigen!r} by eigenvalues); the result would not be reliable")
    value = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_scipy)
    return FrechetResult(value, trace_scipy, trace_eigen, offset)


# ----------------------------------------------------------------------------------------------
# Statistics


@dataclass
class FIDStats:
    """Mean and covariance of Inception features (float64), with provenance."""

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    key: str = ""  # cache key (content + protocol + weights); "" when not from an image set
    source: str = ""  # what the statistics describe (a folder, a stats file, "generated"...)
    content_sha256: str = ""  # hash of the images (or of the stats file) they came from
    skipped: list[tuple[str, str]] = field(default_factory=list)  # unreadable inputs and why

    def sha256(self) -> str:
        """A hash of the statistics themselves (recorded with results)."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.mu, dtype=np.float64).tobytes())
        h.update(np.ascontiguousarray(self.sigma, dtype=np.float64).tobytes())
        return h.hexdigest()

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write ``mu``, ``sigma``, ``n``, ``key`` and the protocol to an ``.npz`` atomically."""
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, mu=self.mu, sigma=self.sigma, n=np.int64(self.n), key=np.str_(self.key),
                         content_sha256=np.str_(self.content_sha256),
                         protocol=np.str_(json.dumps(PROTOCOL, sort_keys=True)))
        return Path(path)


def load_stats(path: str | Path) -> FIDStats:
    """Read an ``.npz`` with ``mu`` (D,) and ``sigma`` (D, D); no pickles; shapes and values checked."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such statistics file", path)
    try:
        with np.load(path, allow_pickle=False) as f:
            if "mu" not in f.files or "sigma" not in f.files:
                raise InputError(f"statistics file without 'mu' and 'sigma' (has: {', '.join(f.files) or 'nothing'})",
                                 path)
            mu, sigma = f["mu"], f["sigma"]
            n = int(f["n"]) if "n" in f.files and f["n"].shape == () else 0
            key = str(f["key"]) if "key" in f.files else ""
    except InputError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise InputError(f"not a readable .npz statistics file ({e})", path) from None
    mu, sigma = _check_stats(mu, sigma, str(path))
    if mu.shape[0] != FEATURE_DIM:
        raise InputError(f"statistics of the wrong shape: mu {mu.shape}, sigma {sigma.shape} "
                         f"(expected ({FEATURE_DIM},) and ({FEATURE_DIM}, {FEATURE_DIM}))", path)
    from .weights import sha256_file

    return FIDStats(mu, sigma, n, key=key, source=str(path), content_sha256=sha256_file(path))


class RunningMoments:
    """Mean and covariance of feature rows accumulated batch by batch in float64 (Chan et al. merge)."""

    def __init__(self, dim: int):
        self.n = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.m2 = np.zeros((dim, dim), dtype=np.float64)

    def add(self, feats: np.ndarray) -> None:
        feats = np.asarray(feats, dtype=np.float64)
        k = feats.shape[0]
        if k == 0:
            return
        batch_mean = feats.mean(axis=0)
        centred = feats - batch_mean
        batch_m2 = centred.T @ centred
        delta = batch_mean - self.mean
        total = self.n + k
        self.m2 += batch_m2 + np.outer(delta, delta) * (self.n * k / total)
        self.mean += delta * (k / total)
        self.n = total

    def stats(self, source: str = "") -> FIDStats:
        if self.n < 2:
            raise UserError(f"{self.n} usable image{'s' if self.n != 1 else ''}: FID needs at least 2 "
                            "(and thousands for a meaningful value)")
        sigma = self.m2 / (self.n - 1)
        return FIDStats(self.mean.copy(), (sigma + sigma.T) / 2, self.n, source=source)


# ----------------------------------------------------------------------------------------------
# Image sets: folders, zips, lists of files


@dataclass(frozen=True)
class ImageItem:
    """One image: a file, or a member of a zip archive."""

    path: Path
    member: str | None = None

    def label(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)


def list_images(location: str | Path) -> list[ImageItem]:
    """The images of a folder (recursive), a zip archive or a single file, in sorted order."""
    location = Path(location)
    if not location.exists():
        raise InputError("no such file or folder", location)
    if location.is_file() and location.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(location) as z:
                names = sorted(n for n in z.namelist()
                               if not n.endswith("/") and Path(n).suffix.lower() in IMAGE_SUFFIXES)
        except (zipfile.BadZipFile, OSError) as e:
            raise InputError(f"not a readable zip archive ({e})", location) from None
        return [ImageItem(location, n) for n in names]
    return [ImageItem(p) for p in expand_inputs([location])]


def content_sha256(items: list[ImageItem]) -> str:
    """A hash of the images' names (relative to their set) and bytes, in order; files hashed in threads."""

    def file_digest(path: Path) -> str:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        return h.hexdigest()

    outer = hashlib.sha256()
    archives = sorted({it.path for it in items if it.member})
    files = [it.path for it in items if not it.member]
    root = Path(os.path.commonpath([str(p.parent) for p in files])) if files else None
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        digests = dict(zip(files + archives, pool.map(file_digest, files + archives)))
    for it in items:
        name = it.member if it.member else str(it.path.relative_to(root)) if root else it.path.name
        outer.update(f"{name}\0{digests[it.path]}\0".encode())
    return outer.hexdigest()


def _open_item(item: ImageItem, archive_cache: dict) -> torch.Tensor:
    """Decode one image to uint8 [3, H, W]; ``InputError`` naming it when it cannot be read."""
    if item.member is None:
        im = open_image(item.path)
    else:
        from PIL import Image, ImageOps

        try:
            z = archive_cache.get(item.path)
            if z is None:
                z = archive_cache[item.path] = zipfile.ZipFile(item.path)
            with Image.open(io.BytesIO(z.read(item.member))) as raw:
                raw.load()
                im = to_rgb(ImageOps.exif_transpose(raw) or raw)
        except Exception as e:  # noqa: BLE001 - any decoder failure is this input's problem
            raise InputError(f"unreadable or truncated image ({type(e).__name__}: {e})", item.label()) from None
    a = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(a.copy()).permute(2, 0, 1)


class _InceptionInputs(torch.utils.data.Dataset):
    """Decodes and resizes to 299² (in DataLoader workers); failures are returned, not raised."""

    def __init__(self, items: list[ImageItem]):
        self.items = items
        self._archives: dict = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            x = _open_item(self.items[i], self._archives)
            return i, resize_for_inception(x[None])[0], None
        except InputError as e:
            return i, None, str(e)


def _collate(batch):
    return batch


# ----------------------------------------------------------------------------------------------
# Feature extraction


@contextlib.contextmanager
def _full_float32():
    """TF32 off while extracting: the protocol is float32, and TF32 convolutions shift FID."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class FeatureExtractor:
    """The FID Inception on a device, with the weights file it was loaded from."""

    def __init__(self, net: FIDInception, weights: WeightsFile | None, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval().requires_grad_(False)
        self.weights = weights
        self.precision = "float32 (TF32 off)"

    @classmethod
    def from_weights(cls, weights_dir: str | Path | None = None, device="cpu") -> "FeatureExtractor":
        weights = resolve("inception", weights_dir)
        net = load_fid_inception(load_state_dict(weights), source=str(weights.path))
        return cls(net, weights, device)

    def weights_key(self) -> str:
        return self.weights.sha256 if self.weights else "unknown-weights"

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> np.ndarray:
        """[B, 3, H, W] of 0..255 values (uint8 or float) -> float64 [B, 2048]."""
        with _full_float32():
            feats = self.net(images.to(self.device, non_blocking=True))
        return feats.double().cpu().numpy()

    def image_set_stats(self, items: list[ImageItem], n: int | None = None, batch_size: int = 50,
                        workers: int = 0, progress: Progress | None = None, source: str = "") -> FIDStats:
        """Statistics of the first ``n`` readable images of ``items`` (all when ``n`` is None).

        Unreadable images are skipped and listed in ``FIDStats.skipped``; later images take their place.
        """
        loader = torch.utils.data.DataLoader(_InceptionInputs(items), batch_size=batch_size, shuffle=False,
                                             num_workers=workers, collate_fn=_collate,
                                             pin_memory=self.device.type == "cuda")
        moments = RunningMoments(FEATURE_DIM)
        skipped: list[tuple[str, str]] = []
        wanted = len(items) if n is None else n
        for batch in loader:
            good = [x for _, x, _ in batch if x is not None]
            skipped += [(items[i].label(), err) for i, x, err in batch if x is None]
            good = good[: wanted - moments.n]
            if good:
                moments.add(self.features(torch.stack(good)))
            if progress:
                progress(len(batch))
            if moments.n >= wanted:
                break
        stats = moments.stats(source)
        stats.skipped = skipped
        return stats

    def generated_stats(self, generate: Callable[[int], torch.Tensor], n: int, batch_size: int = 50,
                        progress: Progress | None = None, source: str = "generated") -> FIDStats:
        """Statistics of ``n`` images from ``generate(k) -> [k, 3, H, W]`` in [-1, 1].

        Generated images are quantised to uint8 with round-half-up, exactly as if saved as PNG.
        """
        moments = RunningMoments(FEATURE_DIM)

        def batches():
            done = 0
            while done < n:
                k = min(batch_size, n - done)
                with torch.no_grad():
                    yield to_uint8(generate(k))
                done += k

        # Generation runs one batch ahead in a thread, overlapping the Inception pass (PyTorch releases
        # the GIL inside its kernels, so the two share the device or the CPU cores).
        for images in prefetched(batches()):
            moments.add(self.features(images))
            if progress:
                progress(len(images))
        return moments.stats(source)

    def paired_stats(self, items: list[ImageItem], transform: Callable[[torch.Tensor], torch.Tensor],
                     size: int, n: int | None = None, batch_size: int = 50,
                     progress: Progress | None = None) -> tuple[FIDStats, FIDStats]:
        """Statistics of real images read at ``size``² and of ``transform(images)`` (e.g. reconstructions).

        Both sides see the same readable images; inputs and outputs in [-1, 1], quantised round-half-up.
        """
        from ..io.images import read_images

        real, fake = RunningMoments(FEATURE_DIM), RunningMoments(FEATURE_DIM)
        skipped: list[tuple[str, str]] = []
        wanted = len(items) if n is None else n

        def batches():
            taken = 0
            for start in range(0, len(items), batch_size):
                chunk = [it.path for it in items[start:start + batch_size]]
                loaded = read_images(chunk, size=size)
                images = loaded.tensor()[: wanted - taken]
                taken += len(images)
                out = None
                if len(images):
                    with torch.no_grad():
                        out = transform(images)
                yield len(chunk), loaded.failures, images, out
                if taken >= wanted:
                    return

        # Reading and transforming the next batch overlaps the Inception pass on this one.
        for count, failures, images, out in prefetched(batches()):
            skipped += [(str(p), err) for p, err in failures]
            if len(images):
                real.add(self.features(to_uint8(images)))
                fake.add(self.features(to_uint8(out)))
            if progress:
                progress(count)
        real_stats, fake_stats = real.stats("inputs"), fake.stats("reconstructions")
        real_stats.skipped = skipped
        return real_stats, fake_stats


def prefetched(iterator, depth: int = 2):
    """Yield the items of ``iterator``, produced ``depth`` ahead in a background thread, in order.
    An exception in the producer is raised here, at the point its item would have come."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def produce():
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(("item", item), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(("end", end))
        except BaseException as e:  # handed to the consumer
            q.put(("error", e))

    thread = threading.Thread(target=produce, daemon=True)
    thread.start()
    try:
        while True:
            kind, value = q.get()
            if kind == "end":
                return
            if kind == "error":
                raise value
            yield value
    finally:
        stop.set()
        thread.join(timeout=5)


# ----------------------------------------------------------------------------------------------
# Reference statistics with a cache


def default_cache_dir() -> Path:
    base = os.environ.get("AUTOMOD_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "automod")
    return Path(base) / "fid-stats"


def stats_key(content: str, weights_sha256: str, n: int | None) -> str:
    """The cache key: image content, protocol, Inception weights and the number of images used."""
    payload = json.dumps({"content": content, "protocol": PROTOCOL_ID, "protocol_text": PROTOCOL,
                          "weights": weights_sha256, "n": n}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _cache_name(location: Path, key: str) -> str:
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in location.name) or "images"
    return f"{stem}-{key[:20]}.npz"


@dataclass
class ImageSetResult:
    stats: FIDStats
    cache_file: Path | None
    from_cache: bool


def set_stats(location: str | Path, extractor: FeatureExtractor, n: int | None = None,
              allow_fewer: bool = False, cache_dir: Path | None = None, batch_size: int = 50,
              workers: int = 0, progress_factory: Callable[[int, str], Progress] | None = None) -> ImageSetResult:
    """Statistics of a folder, zip archive or ``.npz`` stats file, reusing the cache when it can.

    ``n`` asks for that many images: with fewer available this stops with one line, unless
    ``allow_fewer`` (then all are used). ``cache_dir=None`` disables caching.
    """
    location = Path(location)
    if location.is_file() and location.suffix.lower() == ".npz":
        stats = load_stats(location)
        if n is not None and stats.n and stats.n < n and not allow_fewer:
            raise UserError(f"statistics of {stats.n} image{'s' if stats.n != 1 else ''}, but --n asks for {n} (use --allow-fewer to accept)",
                            location)
        return ImageSetResult(stats, None, False)
    items = list_images(location)
    if not items:
        raise UserError("no images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")", location)
    if n is not None and len(items) < n:
        if not allow_fewer:
            raise UserError(f"only {len(items)} image{'s' if len(items) != 1 else ''}, but --n asks for {n} (use --allow-fewer to use them all)",
                            location)
        n = None
    if n is not None and n >= len(items):
        n = None
    content = content_sha256(items)
    key = stats_key(content, extractor.weights_key(), n)
    cache_file = cache_dir / _cache_name(location, key) if cache_dir is not None else None
    if cache_file is not None and cache_file.is_file():
        try:
            cached = load_stats(cache_file)
            if cached.key == key:
                cached.source, cached.content_sha256 = str(location), content
                return ImageSetResult(cached, cache_file, True)
        except InputError:
            pass  # a damaged cache entry is recomputed and replaced
    progress = progress_factory(len(items) if n is None else n, location.name) if progress_factory else None
    stats = extractor.image_set_stats(items, n=n, batch_size=batch_size, workers=workers, progress=progress,
                                      source=str(location))
    stats.key, stats.content_sha256 = key, content
    if n is not None and stats.n < n and not allow_fewer:
        raise UserError(f"only {stats.n} readable images ({len(stats.skipped)} unreadable), but --n asks for "
                        f"{n} (use --allow-fewer to use them all)", location)
    if cache_file is not None and not stats.skipped:
        stats.save(cache_file, overwrite=True)  # content-keyed: replacing an entry never loses anything
    return ImageSetResult(stats, cache_file if cache_file is not None and not stats.skipped else None, False)


def fid_from_stats(a: FIDStats, b: FIDStats) -> FrechetResult:
    """FID between two sets of statistics."""
    return frechet_distance(a.mu, a.sigma, b.mu, b.sigma, labels=(a.source or "first", b.source or "second"))


__all__ = [
    "PROTOCOL", "FIDStats", "FeatureExtractor", "FrechetResult", "ImageItem", "RunningMoments",
    "content_sha256", "default_cache_dir", "fid_from_stats", "frechet_distance", "list_images",
    "load_stats", "set_stats", "stats_key",
]
