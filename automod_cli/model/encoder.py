"""The encoder φ: mirrors the decoder, from_rgb at the entry resolution, then blocks down to 4×4,
ending in an L2-normalised code.

Block i ≥ 1: SNConv3×3 → LReLU → SNConv3×3 → LReLU → 2×2 average pool.
Block 0:     SNConv3×3 → LReLU → SNConv4×4 (no padding; 4×4 → 1×1) → flatten → normalise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import SpectralNormConv2d, channels_last, fade


class EncoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, last: bool, latent_dim: int):
        super().__init__()
        self.last = last  # block 0: the 4×4 block that ends in the code
        self.conv1 = SpectralNormConv2d(c_in, c_out, 3, padding=1)
        if last:
            self.conv2 = SpectralNormConv2d(c_out, latent_dim, 4, padding=0)
        else:
            self.conv2 = SpectralNormConv2d(c_out, c_out, 3, padding=1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        # In-place LReLU: its input is a fresh conv output (a conv's backward does not need it).
        h = F.leaky_relu(self.conv1(h), 0.2, inplace=True)
        if self.last:
            return self.conv2(h)
        return F.avg_pool2d(F.leaky_relu(self.conv2(h), 0.2, inplace=True), 2)


class Encoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ch = config.encoder_channels
        self.blocks = nn.ModuleList(
            EncoderBlock(c_in, c_out, last=(i == 0), latent_dim=config.latent_dim) for i, (c_in, c_out) in enumerate(ch)
        )
        self.from_rgb = nn.ModuleList(nn.Conv2d(3, c_in, 1) for c_in, _ in ch)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def forward(self, x: torch.Tensor, phase: int | None = None, alpha: float = 1.0) -> torch.Tensor:
        """Images [B, 3, 4·2^phase, 4·2^phase] in [-1, 1] -> unit-norm codes [B, D]."""
        phase = self.n_blocks - 1 if phase is None else phase
        expected = 4 * 2**phase
        if x.shape[-1] != expected or x.shape[-2] != expected:
            raise ValueError(f"encoder at phase {phase} takes {expected}x{expected} images, got {tuple(x.shape)}")
        x = channels_last(x)  # the fast layout for CPU convs; values are the same
        h = self.blocks[phase](self.from_rgb[phase](x))
        if alpha < 1.0 and phase > 0:
            # Fade-in mirrors the decoder: the new block blended with the downsampled image's old path.
            skip = self.from_rgb[phase - 1](F.avg_pool2d(x, 2))
            h = fade(skip, h, alpha)
        for i in range(phase - 1, -1, -1):
            h = self.blocks[i](h)
        return F.normalize(h.flatten(1), dim=1, eps=1e-12)
