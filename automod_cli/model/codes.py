"""Codes on the unit sphere: random draws, normalisation, spherical interpolation."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def normalize(z: torch.Tensor) -> torch.Tensor:
    return F.normalize(z, dim=-1, eps=1e-12)


def random_codes(n: int, dim: int = 512, generator: torch.Generator | None = None,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """``normalize(N(0, I))``: uniform on the unit sphere, no truncation. Drawn on the CPU from
    ``generator`` so a seed gives the same codes on every device."""
    z = torch.randn(n, dim, generator=generator)
    return normalize(z).to(device)


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Spherical interpolation between unit vectors along the last axis (t broadcasts).

    Falls back to normalised linear interpolation where a and b are (nearly) parallel, and is
    undefined (returns the lerp) for antipodal pairs.
    """
    a_n, b_n = normalize(a), normalize(b)
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.dim() > 0 and t.dim() < a.dim():
        t = t.reshape(t.shape + (1,) * (a.dim() - t.dim()))
    dot = (a_n * b_n).sum(-1, keepdim=True).clamp(-1.0, 1.0)
    omega = torch.acos(dot)
    so = torch.sin(omega)
    near = so.abs() < 1e-6
    safe_so = torch.where(near, torch.ones_like(so), so)
    out = (torch.sin((1.0 - t) * omega) / safe_so) * a_n + (torch.sin(t * omega) / safe_so) * b_n
    lerp = normalize(torch.lerp(a_n, b_n, t)) if torch.is_tensor(t) else normalize(a_n + t * (b_n - a_n))
    return torch.where(near, lerp, out)
