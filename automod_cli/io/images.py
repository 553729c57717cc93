"""Images in and out, safely.

Everything the suite reads goes through ``read_image``: any format Pillow knows, any mode (grayscale,
palette, RGBA, CMYK, 16-bit, float), EXIF orientation applied (so an image is used as it is
displayed), decompression bombs refused, truncated files reported. Tensors are float32 NCHW in
[-1, 1]; ``to_uint8`` quantises with round-half-up, the convention of the FID protocol.
"""

from __future__ import annotations

import glob
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import InputError, UserError
from .atomic import atomic_path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}

# Refuse images above this many pixels (Pillow warns at ~89M and errors at twice that; we keep one
# explicit limit, large enough for 100-megapixel photos).
MAX_PIXELS = 16384 * 16384 // 2
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ResizeWarning(UserWarning):
    """An input was not square or not at the model's resolution and was cropped/resized."""


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def expand_inputs(items: Iterable[str | Path], recursive: bool = True) -> list[Path]:
    """Files, folders and glob patterns -> a sorted, de-duplicated list of paths.

    Files are kept as given (so a missing or non-image file is reported later, by name); folders
    contribute the image files below them; a glob that matches nothing is an error.
    """
    out: list[Path] = []
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve() if p.exists() else p
        if key not in seen:
            seen.add(key)
            out.append(p)

    for item in items:
        s = str(item)
        p = Path(s)
        if p.is_dir():
            walker = p.rglob("*") if recursive else p.glob("*")
            for f in sorted(x for x in walker if x.is_file() and is_image_path(x)):
                add(f)
        elif any(ch in s for ch in "*?[") and not p.exists():
            matches = sorted(glob.glob(s, recursive=True))
            if not matches:
                raise UserError("no file matches this pattern", s)
            for m in matches:
                if Path(m).is_dir():
                    for f in sorted(x for x in Path(m).rglob("*") if x.is_file() and is_image_path(x)):
                        add(f)
                else:
                    add(Path(m))
        else:
            add(p)
    return out


def open_image(path: str | Path) -> Image.Image:
    """Open, fully decode, apply EXIF orientation and convert to 8-bit RGB; InputError otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, not an image", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.load()
                im = ImageOps.exif_transpose(im) or im
                return to_rgb(im)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InputError(f"image too large (refused above {MAX_PIXELS} pixels): {e}", path) from None
    except UnidentifiedImageError:
        raise InputError("not an image (or a format Pillow cannot read)", path) from None
    except PermissionError:
        raise InputError("permission denied", path) from None
    except (OSError, SyntaxError, ValueError) as e:
        raise InputError(f"unreadable or truncated image ({e})", path) from None


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow mode -> 8-bit RGB (alpha composited on white, 16-bit and float rescaled)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(im).astype(np.float64)
        if im.mode.startswith("I;16"):
            a = a / 65535.0
        elif im.mode == "I":
            a = a / (65535.0 if a.max() > 255 else 255.0)
        else:  # float: assume [0, 1] unless clearly 8-bit-like
            a = a / 255.0 if a.max() > 1.0 else a
        a = np.clip(np.floor(a * 255.0 + 0.5), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(bg, rgba).convert("RGB")
    if im.mode != "RGB":
        return im.convert("RGB")
    return im


def square_and_resize(im: Image.Image, size: int) -> tuple[Image.Image, tuple[int, int] | None]:
    """Centre-crop to a square and resize (Lanczos) to ``size``; also returns the original (w, h) when
    that changed anything (None when the image was already ``size``²)."""
    w, h = im.size
    if w == h == size:
        return im, None
    if w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
    if im.size[0] != size:
        im = im.resize((size, size), Image.LANCZOS)
    return im, (w, h)


def describe_fit(original: tuple[int, int], size: int) -> str:
    """What ``square_and_resize`` did to an image of ``original`` (w, h), e.g. 'centre-cropped from 80×64'."""
    w, h = original
    if w != h and min(w, h) == size:
        return f"centre-cropped from {w}×{h} to {size}×{size}"
    if w != h:
        return f"centre-cropped from {w}×{h} and resized to {size}×{size}"
    return f"resized from {w}×{h} to {size}×{size}"


def fit_square(im: Image.Image, size: int, name: str | Path = "") -> Image.Image:
    """Centre-crop to a square and resize (Lanczos) to ``size``; warns when it changed anything."""
    out, original = square_and_resize(im, size)
    if original is not None:
        w, h = original
        what = f"{w}x{h} is not square; " if w != h else ""
        warnings.warn(f"{name}: {what}{describe_fit(original, size)}", ResizeWarning, stacklevel=2)
    return out


def pil_to_tensor(im: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> float32 [3, H, W] in [-1, 1]."""
    a = np.asarray(im, dtype=np.uint8)
    t = torch.from_numpy(a.copy()).permute(2, 0, 1).float()
    return t / 127.5 - 1.0


def read_image(path: str | Path, size: int | None = None) -> torch.Tensor:
    """Read one image as float32 [3, H, W] in [-1, 1], square-cropped and resized to ``size``."""
    im = open_image(path)
    if size is not None:
        im = fit_square(im, size, path)
    return pil_to_tensor(im)


@dataclass
class LoadedImages:
    """The readable images of a batch of inputs, and the unreadable ones with their reasons."""

    paths: list[Path] = field(default_factory=list)
    images: list[torch.Tensor] = field(default_factory=list)
    failures: list[tuple[Path, str]] = field(default_factory=list)

    def tensor(self) -> torch.Tensor:
        return torch.stack(self.images) if self.images else torch.empty(0)


def read_images(paths: Sequence[str | Path], size: int | None = None) -> LoadedImages:
    """Read many images, collecting failures instead of stopping at the first bad file."""
    out = LoadedImages()
    for p in paths:
        try:
            out.images.append(read_image(p, size))
            out.paths.append(Path(p))
        except InputError as e:
            out.failures.append((Path(p), str(e)))
    return out


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 with round-half-up (``floor(v + 0.5)``), clamped to [0, 255]."""
    v = (x.detach().float() + 1.0) * 127.5
    return torch.floor(v + 0.5).clamp_(0, 255).to(torch.uint8)


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """[3, H, W] in [-1, 1] -> PIL RGB."""
    if x.dim() != 3:
        raise ValueError(f"expected [3, H, W], got {tuple(x.shape)}")
    a = to_uint8(x.cpu()).permute(1, 2, 0).numpy()
    return Image.fromarray(np.ascontiguousarray(a), "RGB")


def save_pil(im: Image.Image, path: str | Path, overwrite: bool = False) -> Path:
    """Save atomically; the format follows the suffix (PNG when there is none we know)."""
    path = Path(path)
    fmt = Image.registered_extensions().get(path.suffix.lower(), "PNG")
    with atomic_path(path, overwrite=overwrite) as tmp:
        im.save(tmp, format=fmt)
    return path


def save_image(x: torch.Tensor, path: str | Path, overwrite: bool = False) -> Path:
    """Save one [3, H, W] image in [-1, 1] atomically."""
    return save_pil(tensor_to_pil(x), path, overwrite=overwrite)


def make_grid(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> torch.Tensor:
    """[N, 3, H, W] -> one [3, H', W'] grid, ``nrow`` images per row, row-major."""
    n, c, h, w = images.shape
    ncol = nrow
    nrows = (n + ncol - 1) // ncol
    grid = torch.full((c, nrows * (h + padding) + padding, ncol * (w + padding) + padding), pad_value,
                      dtype=images.dtype)
    for k in range(n):
        r, col = divmod(k, ncol)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y:y + h, x:x + w] = images[k].cpu()
    return grid


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, overwrite: bool = False) -> Path:
    return save_image(make_grid(images, nrow), path, overwrite=overwrite)


def safe_stem(path: str | Path) -> str:
    """A file-name-safe stem for outputs named after inputs."""
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem) or "image"


def unique_names(paths: Sequence[Path]) -> list[str]:
    """Stems for output files, disambiguated when two inputs share a stem (a/x.png, b/x.png)."""
    stems = [safe_stem(p) for p in paths]
    counts: dict[str, int] = {}
    for s in stems:
        counts[s] = counts.get(s, 0) + 1
    out, used = [], {}
    for s in stems:
        if counts[s] == 1:
            out.append(s)
        else:
            used[s] = used.get(s, 0) + 1
            out.append(f"{s}_{used[s]}")
    return out


def cpu_workers() -> int:
    return max(1, (os.cpu_count() or 1))
