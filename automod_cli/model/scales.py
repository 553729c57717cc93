"""Scales by name, and per-block code stacks.

A model with top resolution R has blocks 0..n-1 at resolutions 4, 8, ..., R. Scales are named by
resolution: ``4-8`` (blocks 0-1), ``16-64``, ``32``, comma lists (``4-8,64``), ``all``, or a group:

    coarse = 4-8      middle = 16-64      fine = 128 and up      (the paper's groups, 256² and up)

A model below 256² has no 128+ blocks, so there ``fine`` is its top resolution alone and ``middle``
runs from 16 to the one below (a 64² model: coarse 4-8, middle 16-32, fine 64). ``group_ranges``
says what each group means for a given model; ``automod info`` prints it.
"""

from __future__ import annotations

import torch

from ..errors import UserError

GROUP_NAMES = ("coarse", "middle", "fine")


def resolution_of(block: int) -> int:
    return 4 * 2**block


def block_of(resolution: int) -> int | None:
    """Block index of a resolution, or None if it is not 4·2^i."""
    if resolution < 4 or resolution & (resolution - 1):
        return None
    return resolution.bit_length() - 3


def group_ranges(n_blocks: int) -> dict[str, list[int]]:
    """Blocks of each named group for a model with ``n_blocks`` blocks."""
    top = resolution_of(n_blocks - 1)
    coarse = [b for b in range(n_blocks) if resolution_of(b) <= 8]
    if top >= 256:
        middle = [b for b in range(n_blocks) if 16 <= resolution_of(b) <= 64]
        fine = [b for b in range(n_blocks) if resolution_of(b) >= 128]
    else:
        middle = [b for b in range(n_blocks) if 16 <= resolution_of(b) < top]
        fine = [n_blocks - 1] if top >= 16 else []
    return {"coarse": coarse, "middle": middle, "fine": fine}


def describe_blocks(blocks: list[int]) -> str:
    if not blocks:
        return "(none)"
    lo, hi = resolution_of(min(blocks)), resolution_of(max(blocks))
    if sorted(blocks) == list(range(min(blocks), max(blocks) + 1)):
        return str(lo) if lo == hi else f"{lo}-{hi}"
    return ",".join(str(resolution_of(b)) for b in sorted(blocks))


def _has(n_blocks: int) -> str:
    groups = group_ranges(n_blocks)
    res = ", ".join(str(resolution_of(b)) for b in range(n_blocks))
    grp = ", ".join(f"{k}={describe_blocks(v)}" for k, v in groups.items())
    return f"this model has scales {res}; groups {grp}; or 'all'"


def parse_scales(spec: str, n_blocks: int) -> list[int]:
    """'4-8' / '16' / 'coarse' / 'all' / '4-8,64' -> sorted block indices; UserError otherwise."""
    text = spec.strip().lower()
    if not text:
        raise UserError(f"empty --scales ({_has(n_blocks)})")
    blocks: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if part == "all":
            blocks.update(range(n_blocks))
            continue
        if part in GROUP_NAMES:
            g = group_ranges(n_blocks)[part]
            if not g:
                raise UserError(f"scale group '{part}' is empty for this model ({_has(n_blocks)})")
            blocks.update(g)
            continue
        lo_s, sep, hi_s = part.partition("-")
        try:
            lo = int(lo_s)
            hi = int(hi_s) if sep else lo
        except ValueError:
            raise UserError(f"cannot read scales '{spec}': use resolutions like 4-8 or 16, a group "
                            f"(coarse, middle, fine) or all ({_has(n_blocks)})") from None
        if lo > hi:
            raise UserError(f"scales '{part}': the range runs from the lower resolution up (e.g. 4-8)")
        for r in (lo, hi):
            b = block_of(r)
            if b is None or b >= n_blocks:
                raise UserError(f"scale {r} is not in this model ({_has(n_blocks)})")
        blocks.update(range(block_of(lo), block_of(hi) + 1))
    return sorted(blocks)


# --- per-block code stacks ------------------------------------------------------------------

def code_stack(z: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """[B, D] codes -> [B, n_blocks, D], the same code at every block."""
    return z.unsqueeze(1).expand(-1, n_blocks, -1).clone()


def mix_stack(base: torch.Tensor, donor: torch.Tensor, blocks: list[int]) -> torch.Tensor:
    """Copy of ``base`` ([B, n, D]) whose ``blocks`` come from ``donor`` (same shape, or [B, D])."""
    out = base.clone()
    if donor.dim() == 2:
        donor = donor.unsqueeze(1).expand_as(base)
    out[:, blocks] = donor[:, blocks]
    return out


def edit_stack(stack: torch.Tensor, delta: torch.Tensor, strength: float, blocks: list[int]) -> torch.Tensor:
    """Add ``strength · delta`` to the codes of ``blocks`` (no re-normalisation, as in the paper)."""
    out = stack.clone()
    out[:, blocks] = out[:, blocks] + strength * delta.to(out)
    return out
