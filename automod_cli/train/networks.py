"""The networks' training-time pieces: one spectral-norm power iteration per encoder forward, code
stacks with style-mixed rows, and the decoder run to an image (with the fade) that can also hand back
the feature map after its first blocks (the scale-consistency term's target)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..model.decoder import Decoder
from ..model.encoder import Encoder
from ..model.layers import SpectralNormConv2d


@torch.no_grad()
def advance_power_iteration(encoder: Encoder, phase: int) -> None:
    """One spectral-norm power iteration for every SN conv the encoder used at ``phase``."""
    for block in encoder.blocks[: phase + 1]:
        for m in block.modules():
            if isinstance(m, SpectralNormConv2d):
                wm = m.weight.reshape(m.weight.shape[0], -1)
                v = F.normalize(wm.t() @ m.u.to(wm.dtype), dim=0, eps=1e-12)
                m.u.copy_(F.normalize(wm @ v, dim=0, eps=1e-12))


def code_stack_mixed(z: torch.Tensor, z_b: torch.Tensor, n_mixed: int, cross: int | None,
                     n: int) -> torch.Tensor:
    """[B, n, D]: z at every block, except the first ``n_mixed`` rows take z_b from block ``cross`` on.
    (The masks are made on the device: no host tensor is copied in the middle of a step.)"""
    stack = z.unsqueeze(1).expand(-1, n, -1)
    if cross is None or n_mixed == 0:
        return stack
    late = torch.arange(n, device=z.device) >= cross
    rows = torch.arange(z.shape[0], device=z.device) < n_mixed
    return torch.where(rows[:, None, None] & late[None, :, None], z_b.unsqueeze(1), stack)


def run_decoder(dec: Decoder, stack: torch.Tensor, phase: int, alpha: float, noise: bool,
                split: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Image at ``phase`` (with the fade) and the feature map after blocks [0, split)."""
    fade = alpha < 1.0 and phase > 0
    cuts = {0, phase + 1}
    if split:
        cuts.add(split)
    if fade:
        cuts.add(phase)
    cuts = sorted(cuts)
    h, feats = None, {}
    for a, b in zip(cuts, cuts[1:]):
        h = dec.features(stack, a, b, h, noise=noise)
        feats[b] = h
    img = dec.to_image(h, phase, alpha, feats.get(phase) if fade else None)
    return img, feats.get(split) if split else None
