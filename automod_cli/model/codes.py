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


def seed_codes(seeds: list[int], dim: int = 512) -> torch.Tensor:
    """One code per seed, ``normalize(N(0, I))`` drawn from a generator seeded with it: seed k gives the
    same code whatever other seeds are drawn with it (StyleGAN2-ADA's ``--seeds``)."""
    out = torch.empty(len(seeds), dim)
    for row, seed in enumerate(seeds):
        out[row] = random_codes(1, dim, torch.Generator().manual_seed(int(seed)))[0]
    return out


MAX_SEEDS = 1_000_000


def parse_seeds(text: str) -> list[int]:
    """'0-35', '1,5,9' or '0-3,10,20-22' -> [0, 1, 2, 3, 10, 20, 21, 22] (order kept, repeats dropped)."""
    from ..errors import UserError

    seeds: list[int] = []
    for part in str(text).replace(" ", "").split(","):
        if not part:
            continue
        lo, dash, hi = part.partition("-")
        try:
            first = int(lo)
            last = int(hi) if dash else first
        except ValueError:
            raise UserError(f"bad seed '{part}' in '{text}': use numbers and ranges such as 0-35 or 1,5,9") from None
        if first < 0 or last < first:
            raise UserError(f"bad seed range '{part}' in '{text}': seeds are ≥ 0, ranges run low-high")
        if last - first + len(seeds) >= MAX_SEEDS:
            raise UserError(f"'{text}' names more than {MAX_SEEDS:,} seeds")
        seeds.extend(range(first, last + 1))
    if not seeds:
        raise UserError(f"no seeds in '{text}'")
    return list(dict.fromkeys(seeds))
