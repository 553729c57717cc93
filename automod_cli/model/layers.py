"""The building blocks: equalised-LR conv, blur, layer noise, AdaIN, spectral-norm conv."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ADAIN_EPS = 1e-8  # the reference has none; this only matters for constant feature maps


class EqualConv2d(nn.Module):
    """Conv with equalised learning rate: weights ~ N(0, 1), scaled by sqrt(2 / fan_in) at run time."""

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = math.sqrt(2.0 / (c_in * kernel * kernel))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, padding=self.padding)


class Blur(nn.Module):
    """Depthwise [1,2,1]ᵀ[1,2,1]/16 binomial filter, zero padding 1."""

    def __init__(self, channels: int):
        super().__init__()
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :]) / 16.0
        self.register_buffer("kernel", k.expand(channels, 1, 3, 3).contiguous(), persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.kernel.to(x.dtype), padding=1, groups=self.channels)


class LayerNoise(nn.Module):
    """Adds per-channel-scaled Gaussian noise, drawn independently per sample, channel and pixel
    (as the reference does; StyleGAN shares one map across channels)."""

    def __init__(self, channels: int):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, enabled: bool) -> torch.Tensor:
        if not enabled:
            return x
        return x + self.scale.view(1, -1, 1, 1) * torch.randn_like(x)


class AdaIN(nn.Module):
    """Adaptive instance norm: [γ; β] = Linear(z); out = γ·(h − mean)/std + β per sample and channel.

    The std is the unbiased one, as in the reference. ``style`` is a plain Linear (no equalised LR),
    Xavier-normal weights and bias 1 for both γ and β.
    """

    def __init__(self, latent_dim: int, channels: int):
        super().__init__()
        self.style = nn.Linear(latent_dim, 2 * channels)
        nn.init.xavier_normal_(self.style.weight)
        nn.init.ones_(self.style.bias)
        self.channels = channels

    def forward(self, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(code).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=1)
        # γ·(x − μ)/σ + β folded into one multiply-add over the feature map.
        a = gamma * torch.rsqrt(var + ADAIN_EPS)
        return x * a + (beta - mean * a)


class SpectralNormConv2d(nn.Module):
    """Conv whose weight is divided by a one-step power-iteration estimate of its spectral norm.

    Matches the reference: from the stored u, v = normalize(Wᵀu), u' = normalize(W v),
    sigma = u'ᵀ W v, W_sn = W / sigma (bias not normalised). In training mode u' replaces the stored
    u (one power iteration per forward; gradients flow through the estimate, as in the reference).
    In eval mode the stored u is frozen, so repeated evaluation never drifts.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int):
        super().__init__()
        w = torch.empty(c_out, c_in, kernel, kernel)
        nn.init.kaiming_normal_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu")
        self.weight = nn.Parameter(w)
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.register_buffer("u", torch.randn(c_out) * 0.1)
        self.padding = padding

    def normalized_weight(self) -> torch.Tensor:
        w = self.weight
        wm = w.reshape(w.shape[0], -1)
        u = self.u.to(wm.dtype)
        v = F.normalize(wm.t() @ u, dim=0, eps=1e-12)
        u_new = F.normalize(wm @ v, dim=0, eps=1e-12)
        sigma = u_new @ (wm @ v)
        if self.training:
            with torch.no_grad():
                self.u.copy_(u_new.detach())
        return w / sigma

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.normalized_weight(), self.bias, padding=self.padding)
