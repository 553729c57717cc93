"""The decoder θ: a constant 4×4 canvas modulated, block by block, by latent codes.

Block 0 (4²):  EqConv3×3 → LReLU → AdaIN.
Block i ≥ 1:   upsample×2 → EqConv3×3 → Blur → Noise → LReLU → AdaIN → EqConv3×3 → Noise → LReLU → AdaIN.
Each block has its own code (both AdaINs of a block share it), so codes come as a per-sample stack
``[B, n_blocks, D]``; a single ``[B, D]`` code is used for every block. There is no mapping network
and the code is used as given (edited codes are not re-normalised).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .config import ModelConfig
from .layers import AdaIN, Blur, EqualConv2d, LayerNoise, channels_last, fade


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, latent_dim: int, first: bool):
        super().__init__()
        self.first = first
        self.conv1 = EqualConv2d(c_in, c_out, 3, padding=1)
        self.adain1 = AdaIN(latent_dim, c_out)
        if not first:
            self.blur = Blur(c_out)
            self.noise1 = LayerNoise(c_out)
            self.conv2 = EqualConv2d(c_out, c_out, 3, padding=1)
            self.noise2 = LayerNoise(c_out)
            self.adain2 = AdaIN(latent_dim, c_out)

    def forward(self, h: torch.Tensor, code: torch.Tensor, noise: bool) -> torch.Tensor:
        # In-place LReLU: its input is always a fresh conv (or noise) output that nothing else keeps.
        if self.first:
            return self.adain1(F.leaky_relu(self.conv1(h), 0.2, inplace=True), code)
        h = self.noise1(self.blur(self.conv1.forward_upsampled(h)), noise)  # upsample ×2 folded into conv1
        h = self.adain1(F.leaky_relu(h, 0.2, inplace=True), code)
        h = self.noise2(self.conv2(h), noise)
        return self.adain2(F.leaky_relu(h, 0.2, inplace=True), code)


class Decoder(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        ch = config.decoder_channels
        c_const = config.constant_channels
        self.blocks = nn.ModuleList(
            DecoderBlock(c_const if i == 0 else ch[i - 1], ch[i], config.latent_dim, first=(i == 0))
            for i in range(config.n_blocks)
        )
        self.to_rgb = nn.ModuleList(nn.Conv2d(c, 3, 1) for c in ch)
        self.register_buffer("constant", torch.ones(1, c_const, 4, 4), persistent=False)

    @property
    def n_blocks(self) -> int:
        return len(self.blocks)

    def code_stack(self, codes: torch.Tensor, n: int) -> torch.Tensor:
        """[B, D] or [B, ≥n, D] -> [B, n, D] (one code per block)."""
        if codes.dim() == 2:
            return codes.unsqueeze(1).expand(-1, n, -1)
        if codes.dim() != 3 or codes.shape[1] < n:
            raise ValueError(f"codes must be [B, D] or [B, >={n}, D], got {tuple(codes.shape)}")
        return codes

    def features(self, codes: torch.Tensor, start: int, stop: int, h: torch.Tensor | None = None,
                 noise: bool = False) -> torch.Tensor:
        """Run blocks [start, stop) from feature map ``h`` (the constant canvas when start == 0).

        Block i is modulated by ``codes[:, i]``. Splitting a decode into two calls at block j gives
        exactly the one-call result; the training game's consistency loss relies on this.
        Without autograd, feature maps are channels_last (the fast layout for CPU convs; same values).
        """
        codes = self.code_stack(codes, stop)
        if h is None:
            if start != 0:
                raise ValueError("a feature map is needed to start after block 0")
            h = self.constant.expand(codes.shape[0], -1, -1, -1).to(codes.dtype)
        h = channels_last(h)
        for i in range(start, stop):
            h = self.blocks[i](h, codes[:, i], noise)
        return h

    def to_image(self, h: torch.Tensor, phase: int, alpha: float = 1.0,
                 h_prev: torch.Tensor | None = None) -> torch.Tensor:
        """to_rgb at ``phase``; during a fade (alpha < 1) blended with the upsampled previous scale."""
        rgb = self.to_rgb[phase](h)
        if alpha < 1.0 and phase > 0:
            if h_prev is None:
                raise ValueError("a fade needs the previous block's features")
            skip = F.interpolate(self.to_rgb[phase - 1](h_prev), scale_factor=2, mode="nearest")
            rgb = fade(skip, rgb, alpha)
        return rgb.contiguous()

    def forward(self, codes: torch.Tensor, phase: int | None = None, alpha: float = 1.0,
                noise: bool = False) -> torch.Tensor:
        """Decode codes ([B, D] or [B, n_blocks, D]) to images at resolution 4·2^phase."""
        phase = self.n_blocks - 1 if phase is None else phase
        if not 0 <= phase < self.n_blocks:
            raise ValueError(f"phase {phase} out of range 0..{self.n_blocks - 1}")
        codes = self.code_stack(codes, phase + 1)
        if alpha < 1.0 and phase > 0:
            h_prev = self.features(codes, 0, phase, noise=noise)
            h = self.features(codes, phase, phase + 1, h_prev, noise=noise)
            return self.to_image(h, phase, alpha, h_prev)
        return self.to_image(self.features(codes, 0, phase + 1, noise=noise), phase)
