"""Perceptual path length, the StyleGAN protocol on the unit sphere.

For each sample: two random codes z0, z1; t ~ U[0, 1] ("full" path) or t = 0 ("end"); the images at
``slerp(z0, z1, t)`` and ``slerp(z0, z1, t + ε)`` (same noise, here noise off), face-cropped,
box-downsampled to 256 if larger, kept as float (no uint8 cast); their LPIPS distance / ε².
Values below the 1st and above the 99th percentile are dropped before the mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..model.codes import normalize, slerp
from .lpips import face_crop

EPSILON = 1e-4
Progress = Callable[[int], None]


def percentile_filter(values: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """Keep values within [P_low, P_high]; P_low rounds down to a sample, P_high up (as StyleGAN does)."""
    values = np.asarray(values, dtype=np.float64)
    lo = np.percentile(values, low, method="lower")
    hi = np.percentile(values, high, method="higher")
    return values[(values >= lo) & (values <= hi)]


def downsample_to(images: torch.Tensor, size: int = 256) -> torch.Tensor:
    """Box-filter downsampling by an integer factor until the height is at most ``size``."""
    h = images.shape[-2]
    if h > size:
        factor = h // size
        images = F.avg_pool2d(images, kernel_size=factor, stride=factor)
    return images


@dataclass
class PPLResult:
    value: float  # mean of the filtered distances
    n: int  # samples drawn
    n_kept: int  # samples within the percentiles
    variant: str
    distances: np.ndarray  # all raw distances / ε², unfiltered


def ppl_variant(sampling: str, crop: bool) -> str:
    return f"ppl_z{sampling}_{'crop' if crop else 'nocrop'}"


def path_lengths(decode: Callable[[torch.Tensor], torch.Tensor],
                 distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 n: int, dim: int, sampling: str = "full", crop: bool = True, epsilon: float = EPSILON,
                 batch_size: int = 16, generator: torch.Generator | None = None, device="cpu",
                 progress: Progress | None = None) -> np.ndarray:
    """Raw per-sample path lengths: ``distance(img(t), img(t+ε)) / ε²`` for ``n`` samples.

    ``decode(codes [B, dim]) -> images [B, 3, H, W]`` (float, roughly [-1, 1]); codes are drawn on CPU
    from ``generator`` (so results do not depend on the device) and moved to ``device``.
    """
    if sampling not in ("full", "end"):
        raise ValueError(f"sampling must be 'full' or 'end', not {sampling!r}")
    out = []
    done = 0
    while done < n:
        k = min(batch_size, n - done)
        z0 = normalize(torch.randn(k, dim, generator=generator))
        z1 = normalize(torch.randn(k, dim, generator=generator))
        t = torch.rand(k, generator=generator) if sampling == "full" else torch.zeros(k)
        za = slerp(z0.double(), z1.double(), t.double()).float()
        zb = slerp(z0.double(), z1.double(), (t + epsilon).double()).float()
        with torch.no_grad():
            images = decode(torch.cat([za, zb]).to(device)).float()
        if crop:
            images = face_crop(images)
        images = downsample_to(images)
        d = distance(images[:k], images[k:]).double().cpu().numpy() / (epsilon ** 2)
        out.append(d)
        done += k
        if progress:
            progress(k)
    return np.concatenate(out) if out else np.zeros(0)


def perceptual_path_length(decode, distance, n: int, dim: int, sampling: str = "full", crop: bool = True,
                           epsilon: float = EPSILON, batch_size: int = 16, seed: int = 0, device="cpu",
                           progress: Progress | None = None) -> PPLResult:
    """PPL with percentile filtering; see ``path_lengths`` for the arguments."""
    if n < 1:
        raise ValueError("n must be at least 1")
    generator = torch.Generator().manual_seed(seed)
    raw = path_lengths(decode, distance, n, dim, sampling, crop, epsilon, batch_size, generator, device, progress)
    kept = percentile_filter(raw)
    return PPLResult(float(kept.mean()), len(raw), len(kept), ppl_variant(sampling, crop), raw)
