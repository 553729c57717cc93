"""Reconstruction PSNR of images in [-1, 1]: the figure the demo, the toy-model evaluation and the
training benchmark report."""

from __future__ import annotations

import torch


def reconstruction_psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of the PSNR (dB, peak 1 on the [0, 1] scale) of ``recon``, clamped to [-1, 1],
    against ``target``; both [N, 3, H, W] in [-1, 1]."""
    mse = ((recon.clamp(-1, 1) - target) / 2).pow(2).flatten(1).mean(1)
    return float((10 * torch.log10(1.0 / mse.clamp_min(1e-12))).mean())
