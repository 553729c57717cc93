"""The model's shape, as a small frozen dataclass that is saved inside every model file."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

from ..errors import UserError

# Channels out of decoder block i (resolution 4·2^i), from the reference implementation.
DECODER_CHANNELS = {
    "large": (512, 512, 512, 512, 512, 256, 128, 64, 32),  # FFHQ, LSUN (the default)
    "small": (512, 512, 512, 512, 256, 128, 64, 32, 16),  # CelebA-HQ (--small_darch)
}
# Encoder block i reads ENCODER_IN[i] channels and writes ENCODER_OUT[i]; from_rgb[i] maps 3 -> ENCODER_IN[i].
# (The reference indexes these from the top, progression k = 8 - i.)
ENCODER_IN = (512, 512, 512, 512, 256, 128, 64, 32, 16)
ENCODER_OUT = (512, 512, 512, 512, 512, 256, 128, 64, 32)
CONSTANT_CHANNELS = 512  # the decoder's constant 4x4 input

MAX_RESOLUTION = 1024


@dataclass(frozen=True)
class ModelConfig:
    """What an automodulator looks like.

    resolution: top resolution (a power of two, 4..1024); the model has log2(resolution) - 1 blocks.
    variant:    "large" (default; FFHQ/LSUN) or "small" (CelebA-HQ) decoder channel plan.
    width:      channel multiplier (1.0 = the paper; e.g. 1/16 for models that train on a CPU).
    latent_dim: size of the code z (512 in the paper).
    """

    resolution: int = 256
    variant: str = "large"
    width: float = 1.0
    latent_dim: int = 512

    def __post_init__(self) -> None:
        r = self.resolution
        if not isinstance(r, int) or r < 4 or r > MAX_RESOLUTION or r & (r - 1):
            raise UserError(f"resolution must be a power of two from 4 to {MAX_RESOLUTION}, got {r}")
        if self.variant not in DECODER_CHANNELS:
            raise UserError(f"unknown variant '{self.variant}' (use one of {', '.join(DECODER_CHANNELS)})")
        if not (0 < self.width <= 4):
            raise UserError(f"width must be in (0, 4], got {self.width}")
        if self.latent_dim < 1:
            raise UserError(f"latent_dim must be positive, got {self.latent_dim}")

    @property
    def n_blocks(self) -> int:
        return int(math.log2(self.resolution)) - 1

    @property
    def max_phase(self) -> int:
        return self.n_blocks - 1

    @property
    def resolutions(self) -> list[int]:
        return [4 * 2**i for i in range(self.n_blocks)]

    def scaled(self, channels: int) -> int:
        return max(1, int(round(channels * self.width)))

    @property
    def decoder_channels(self) -> list[int]:
        return [self.scaled(c) for c in DECODER_CHANNELS[self.variant][: self.n_blocks]]

    @property
    def constant_channels(self) -> int:
        return self.scaled(CONSTANT_CHANNELS)

    @property
    def encoder_channels(self) -> list[tuple[int, int]]:
        """(in, out) channels of encoder block i (block 0's last conv then maps out -> latent_dim)."""
        return [(self.scaled(ENCODER_IN[i]), self.scaled(ENCODER_OUT[i])) for i in range(self.n_blocks)]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise UserError(f"unknown model config keys: {', '.join(sorted(unknown))}")
        return cls(**d)
