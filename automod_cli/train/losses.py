"""The loss terms of the automodulator training game (spec §2), with the reference's constants
applied by the caller (loop.py), not here.

- ``batch_kl(z)``: KL of the batch's per-dimension Gaussian fit to N(0, I).
- ``kl_gap(kl_real, kl_fake, margin)``: the encoder's adversarial KL term with the margin clamp.
- ``cos_mismatch(a, b)``: the reference's latent mismatch, ``mean_d(2 − â_d·b̂_d)`` per sample.
- ``AdaptiveRobustLoss``: Barron's general robust loss as a negative log-likelihood with learned
  per-pixel, per-channel shape α ∈ (0.001, 1.999) and scale c ≥ 1e-5.
- ``l1_loss``, ``consistency_mse``.
- ``mean_pairwise_cosine(z)``: a monitor, not a loss: how far the encoder has collapsed the codes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ALPHA_LO, ALPHA_HI = 0.001, 1.999
SCALE_LO = 1e-5


def batch_kl(z: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``mean_d[(σ²_d + μ²_d)/2 − ½·log σ²_d − ½]`` with batch mean μ_d and biased variance σ²_d."""
    mu = z.mean(0)
    var = (z - mu).pow(2).mean(0)
    return ((var + mu.pow(2)) / 2 - 0.5 * torch.log(var + eps) - 0.5).mean()


def kl_gap(kl_real: torch.Tensor, kl_fake: torch.Tensor, margin: float, weight: float = 0.1) -> torch.Tensor:
    """``clamp(w·KL_real − w·KL_fake, −m, m/2)``; unclamped when m = 0 (as in the reference)."""
    gap = weight * kl_real - weight * kl_fake
    return gap.clamp(-margin, margin / 2) if margin > 0 else gap


def cos_mismatch(a: torch.Tensor, b: torch.Tensor, reduce: str = "mean") -> torch.Tensor:
    """The reference's latent mismatch ``mean_d(2 − â_d·b̂_d) = 2 − cos(a, b)/D`` per sample.

    ``reduce``: "mean" over the batch, "sum" over the batch, or "none" (one value per sample).
    """
    per_sample = (2.0 - F.normalize(a, dim=-1) * F.normalize(b, dim=-1)).mean(-1)
    if reduce == "none":
        return per_sample
    return per_sample.sum() if reduce == "sum" else per_sample.mean()


def mean_pairwise_cosine(z: torch.Tensor) -> torch.Tensor:
    """The mean cosine between the codes of two different rows of ``z`` [B, D], B ≥ 2.

    About 0 for codes spread over the sphere (random directions in 512-d: ±0.04), 1 when every row
    points the same way. Logged for the real batch as ``real_code_cos``: the KL of the codes, averaged
    over 512 dimensions, hardly shows such a collapse (the shared toy64 run's: README, "What limits the
    toy models").
    Uses ‖Σ ẑ_i‖² = B + Σ_{i≠j} ẑ_i·ẑ_j, so it costs O(B·D), not O(B²·D).
    """
    b = z.shape[0]
    s = F.normalize(z.float(), dim=-1).sum(0)
    return (s.dot(s) - b) / (b * (b - 1))


def l1_loss(residual: torch.Tensor) -> torch.Tensor:
    return residual.abs().mean()


def consistency_mse(features: torch.Tensor, target: torch.Tensor, reduce: str = "mean",
                    hold_target: bool = False) -> torch.Tensor:
    """Squared error between re-decoded coarse features and the ones z_A produced.

    As in the reference (train.py:309, ``utils.mismatch(..., 'L2')``), neither side is detached: the
    gradient reaches the decoder through the re-decode and through the target ``h = θ_[0,j)(z_A)``.
    ``hold_target`` detaches the target (the CPU presets' ``consistency_grad`` "image").
    """
    sq = (features - (target.detach() if hold_target else target)).pow(2)
    return sq.sum() if reduce == "sum" else sq.mean()


# ----------------------------------------------------------------------------------------------
# Barron's general and adaptive robust loss (Barron, CVPR 2019)


def robust_rho(x: torch.Tensor, alpha: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """ρ(x, α, c) = |α−2|/α · (((x/c)²/|α−2| + 1)^{α/2} − 1), for α ∈ (0, 2).

    Written as ``|α−2|/α · expm1(α/2 · log1p((x/c)²/|α−2|))`` so it stays accurate near α → 0.
    """
    b = (alpha - 2.0).abs()
    y = (x / scale).pow(2) / b
    return (b / alpha) * torch.expm1(0.5 * alpha * torch.log1p(y))


def _rho_numpy(x: np.ndarray | float, alpha: float) -> np.ndarray:
    if alpha == 0.0:
        return np.log1p(0.5 * np.square(x))
    if alpha == 2.0:
        return 0.5 * np.square(x)
    b = abs(alpha - 2.0)
    return (b / alpha) * np.expm1(0.5 * alpha * np.log1p(np.square(x) / b))


TABLE_POINTS = 257  # uniform knots of the log-partition table on α ∈ [0, 2] ...
EDGE_POINTS = 48    # ... plus geometrically spaced ones towards α = 0 and α = 2, where log Z bends sharply


@lru_cache(maxsize=1)
def log_partition_table() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(α knots, log Z(α), d log Z/dα) with Z(α) = ∫ exp(−ρ(x, α, 1)) dx, by numerical integration.

    Computed once per process (~1 s); the derivative comes from a cubic spline through the values.
    """
    from scipy.integrate import quad
    from scipy.interpolate import CubicSpline

    edge = np.geomspace(1e-5, 0.05, EDGE_POINTS)
    alphas = np.unique(np.round(np.concatenate([np.linspace(0.0, 2.0, TABLE_POINTS), edge, 2.0 - edge]), 12))
    values = []
    for a in alphas:
        half, _ = quad(lambda x, a=a: math.exp(-float(_rho_numpy(x, a))), 0.0, np.inf, limit=400,
                       epsabs=1e-12, epsrel=1e-10)
        values.append(math.log(2.0 * half))
    values = np.array(values)
    slopes = CubicSpline(alphas, values)(alphas, 1)
    return alphas, values, slopes


@lru_cache(maxsize=8)
def _log_partition_tensors(dtype: torch.dtype, device: torch.device) -> tuple[torch.Tensor, ...]:
    """The table as tensors on ``device``, made once: copying it from the host at every step would be
    a host synchronisation per step on CUDA."""
    return tuple(torch.as_tensor(t, dtype=dtype, device=device) for t in log_partition_table())


def log_partition(alpha: torch.Tensor) -> torch.Tensor:
    """log Z(α) by cubic Hermite interpolation of the table (differentiable in α).

    An approximation of the exact partition function (as Barron's own spline table is): the
    interpolation error is below ~1e-8 on (0.001, 1.999) (checked against direct integration
    in the tests).
    """
    knots, vals, ders = _log_partition_tensors(alpha.dtype, alpha.device)
    a = alpha.clamp(0.0, 2.0)
    i = (torch.searchsorted(knots, a.detach().contiguous(), right=True) - 1).clamp(0, len(knots) - 2)
    x0, x1 = knots[i], knots[i + 1]
    h = x1 - x0
    t = (a - x0) / h
    t2, t3 = t * t, t * t * t
    return ((2 * t3 - 3 * t2 + 1) * vals[i] + (t3 - 2 * t2 + t) * h * ders[i]
            + (-2 * t3 + 3 * t2) * vals[i + 1] + (t3 - t2) * h * ders[i + 1])


def robust_nll(x: torch.Tensor, alpha: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Negative log-likelihood of Barron's distribution: ρ(x, α, c) + log c + log Z(α)."""
    return robust_rho(x, alpha, scale) + torch.log(scale) + log_partition(alpha)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def _softplus_inverse(y: float) -> float:
    return math.log(math.expm1(y))


class AdaptiveRobustLoss(nn.Module):
    """Barron's adaptive loss over images of one shape: one (α, c) per pixel and channel.

    α = 0.001 + 1.998·sigmoid(a) and c = softplus(s) + 1e-5 with latent a, s; initialised at α = 1,
    c = 1 (as Barron's ``AdaptiveLossFunction``). Returns the mean NLL over all elements.
    These parameters are trained by the encoder's optimiser.
    """

    def __init__(self, shape: tuple[int, ...], alpha_init: float = 1.0, scale_init: float = 1.0):
        super().__init__()
        self.shape = tuple(shape)
        a0 = _logit((alpha_init - ALPHA_LO) / (ALPHA_HI - ALPHA_LO))
        s0 = _softplus_inverse(scale_init - SCALE_LO)
        self.latent_alpha = nn.Parameter(torch.full(self.shape, a0))
        self.latent_scale = nn.Parameter(torch.full(self.shape, s0))

    def alpha(self) -> torch.Tensor:
        return ALPHA_LO + (ALPHA_HI - ALPHA_LO) * torch.sigmoid(self.latent_alpha)

    def scale(self) -> torch.Tensor:
        return F.softplus(self.latent_scale) + SCALE_LO

    def forward(self, residual: torch.Tensor) -> torch.Tensor:
        """residual [B, *shape] -> mean negative log-likelihood (computed in float32)."""
        if tuple(residual.shape[1:]) != self.shape:
            raise ValueError(f"robust loss for {self.shape}, got residuals {tuple(residual.shape)}")
        return robust_nll(residual.float(), self.alpha(), self.scale()).mean()
