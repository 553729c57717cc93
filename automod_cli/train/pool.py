"""The image pool of past fakes that the encoder step draws from once a phase has faded in."""

from __future__ import annotations

import torch


class ImagePool:
    """Past fakes (pix2pix-style): until full, fakes are stored and passed through; then each new fake
    has a 50% chance to be swapped with a random stored one (one after another, so a fake stored
    earlier in the same batch can come straight back out).

    The stored fakes are one device tensor. ``draw`` makes every decision on the host, from the
    trainer's generator, as two index vectors into ``cat([stored, fakes])`` (the batch's output and
    the store's new content); ``apply`` is then two gathers. So a step never reads a device value on
    the host, and a captured CUDA graph replays it with new indices.
    """

    def __init__(self, size: int):
        self.size = size
        self.count = 0  # slots filled so far
        self.images: torch.Tensor | None = None

    def ensure(self, shape: tuple[int, ...], device: torch.device) -> None:
        """Storage for fakes of ``shape`` (one image) on ``device``, made once per pool."""
        if self.images is None and self.size > 0:
            self.images = torch.zeros((self.size, *shape), device=device)

    def draw(self, n: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        draws = torch.rand(n, generator=gen)
        slots = torch.randint(0, self.size, (n,), generator=gen)
        held = list(range(self.size))  # held[s]: the row of cat([stored, fakes]) that slot s holds
        out = []
        for k in range(n):
            row = self.size + k
            if self.count < self.size:
                held[self.count] = row
                self.count += 1
                out.append(row)
            elif draws[k] < 0.5:
                s = int(slots[k])
                out.append(held[s])
                held[s] = row
            else:
                out.append(row)
        return torch.tensor(out), torch.tensor(held)

    def apply(self, fakes: torch.Tensor, out_rows: torch.Tensor, held_rows: torch.Tensor) -> torch.Tensor:
        both = torch.cat([self.images, fakes.to(self.images.dtype)])
        self.images.copy_(both[held_rows])
        return both[out_rows]
