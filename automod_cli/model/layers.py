"""The building blocks: equalised-LR conv, blur, layer noise, AdaIN, spectral-norm conv.

Speed (CPU inference is the slow case; none of this changes results beyond float rounding): a nearest
×2 upsample followed by a 3×3 conv is computed as one stride-2 transposed conv with a folded 4×4 kernel
(2.25× fewer multiply-adds); without autograd the networks run in channels_last memory format
(oneDNN's fast path for convs and depthwise convs) and AdaIN works in place; within one
``frozen_weights`` scope each conv's run-time weight is computed once. Parameter and buffer names
are unchanged.
"""

from __future__ import annotations

import contextlib
import math
from functools import lru_cache
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

ADAIN_EPS = 1e-8  # the reference has none; this only matters for constant feature maps


def _upsample_fold_matrix() -> torch.Tensor:
    """[9, 16]: 3×3 taps -> 4×4 taps of the stride-2 transposed conv that equals nearest ×2 upsampling
    then the 3×3 conv (zero padding 1). Per axis: taps (w₋₁, w₀, w₁) -> (w₁, w₀ + w₁, w₋₁ + w₀, w₋₁)."""
    per_axis = torch.tensor([[0.0, 0.0, 1.0], [0.0, 1.0, 1.0], [1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    return torch.einsum("pk,ql->klpq", per_axis, per_axis).reshape(9, 16)


_UPSAMPLE_FOLD = _upsample_fold_matrix()


@lru_cache(maxsize=8)
def _upsample_fold_on(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The fold matrix on ``device`` in ``dtype``, made once: copying it from the host at every training
    step is a host-to-device copy from pageable memory, a synchronisation per conv on CUDA."""
    return _UPSAMPLE_FOLD.to(device, dtype)


def fold_upsample_into_conv3x3(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """[out, in, 3, 3] conv weight (times ``scale``) -> [in, out, 4, 4] weight of the equivalent
    stride-2 transposed conv (of ``conv2d(interpolate(x, scale_factor=2, mode="nearest"), w, padding=1)``).
    Computed in the weight's dtype even under autocast (each tap is a sum of at most 4 weights)."""
    c_out, c_in = weight.shape[:2]
    # (compiled, the fold is a constant of the graph: dynamo cannot trace through the cache)
    fold = (_UPSAMPLE_FOLD.to(weight.device, weight.dtype) if torch.compiler.is_compiling()
            else _upsample_fold_on(weight.device, weight.dtype)) * scale
    device = weight.device.type
    autocast_off = torch.autocast(device, enabled=False) if device in ("cpu", "cuda") \
        else contextlib.nullcontext()
    with autocast_off:
        return (weight.reshape(c_out * c_in, 9) @ fold).view(c_out, c_in, 4, 4).transpose(0, 1)


def fade(old: torch.Tensor, new: torch.Tensor, alpha: float) -> torch.Tensor:
    """The fade-in blend (1 - α)·old + α·new, in the wider of the two dtypes: under CUDA autocast the
    upsampled or downsampled path can come out in fp32 beside a bf16 conv output, and lerp takes one dtype."""
    dtype = torch.promote_types(old.dtype, new.dtype)
    return torch.lerp(old.to(dtype), new.to(dtype), alpha)


def channels_last(x: torch.Tensor) -> torch.Tensor:
    """x in channels_last memory format when autograd is off (inference); unchanged otherwise.

    fp32 training on a CPU keeps the default layout: oneDNN's channels_last backward was seen to lose
    accuracy (1e-3 relative in some conv-bias gradients, against 1e-6 in the default layout). bf16 training
    (and any on CUDA) puts the networks in channels_last instead (train/loop.py: Trainer.channels_last)."""
    if torch.is_grad_enabled():
        return x
    return x.contiguous(memory_format=torch.channels_last)


class _WeightCache:
    """Mixin: run-time weights (scaled, normalised, folded) remembered inside a ``frozen_weights`` scope.

    Outside the scope (training, or anyone changing weights between calls) nothing is remembered.
    Inside it the weights must not change; Automodulator.encode/decode open one per call, so a
    call split into many batches computes each weight once, and ``Automodulator.frozen`` one for a
    whole streamed run of many calls.
    """

    _frozen: dict | None = None

    def _cached(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if self._frozen is None or torch.is_grad_enabled():
            return compute()
        if key not in self._frozen:
            self._frozen[key] = compute()
        return self._frozen[key]


@contextlib.contextmanager
def frozen_weights(module: nn.Module) -> Iterator[None]:
    """Within this scope each conv of ``module`` computes its run-time weight once (no-grad calls only).

    Scopes nest: an inner scope (one encode/decode call) reuses the weights of an outer one (a whole
    streamed run, ``Automodulator.frozen``) and leaves them to it.
    """
    layers = [m for m in module.modules() if isinstance(m, _WeightCache) and m._frozen is None]
    for m in layers:
        m._frozen = {}
    try:
        yield
    finally:
        for m in layers:
            m._frozen = None


class EqualConv2d(_WeightCache, nn.Module):
    """Conv with equalised learning rate: weights ~ N(0, 1), scaled by sqrt(2 / fan_in) at run time."""

    def __init__(self, c_in: int, c_out: int, kernel: int, padding: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.scale = math.sqrt(2.0 / (c_in * kernel * kernel))
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self._cached("conv", lambda: self.weight * self.scale)
        return F.conv2d(x, w, self.bias, padding=self.padding)

    def forward_upsampled(self, x: torch.Tensor) -> torch.Tensor:
        """``forward(interpolate(x, scale_factor=2, mode="nearest"))`` as one transposed conv (3×3, pad 1)."""
        if self.weight.shape[-1] != 3 or self.padding != 1:
            return self.forward(F.interpolate(x, scale_factor=2, mode="nearest"))
        w = self._cached("upsampled", lambda: fold_upsample_into_conv3x3(self.weight, self.scale))
        return F.conv_transpose2d(x, w, self.bias, stride=2, padding=1)


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
        # Drawn in NCHW order whatever x's memory layout, so a seed gives the same noise as ever. The sum
        # stays in x's dtype: under bf16 autocast an fp32 scale would promote the map (and the AdaIN after
        # it) to fp32, and the next conv would cast it back.
        noise = torch.randn(x.shape, dtype=x.dtype, device=x.device)
        return torch.addcmul(x, self.scale.to(x.dtype).view(1, -1, 1, 1), noise)


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
        # Two-pass unbiased variance (torch.var_mean's one-pass Welford is several times slower on CPU).
        centred = x - x.mean(dim=(2, 3), keepdim=True)
        var = centred.square().sum(dim=(2, 3), keepdim=True) / (x.shape[2] * x.shape[3] - 1)
        a = gamma * torch.rsqrt(var + ADAIN_EPS)
        if torch.is_grad_enabled() and (centred.requires_grad or a.requires_grad):
            return torch.addcmul(beta, centred, a)
        return centred.mul_(a).add_(beta)  # no autograd: reuse the centred map (it is ours)


class SpectralNormConv2d(_WeightCache, nn.Module):
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
        # In training mode every forward is a power iteration (u changes), so nothing is cached.
        w = self.normalized_weight() if self.training else \
            self._cached("conv", self.normalized_weight)
        return F.conv2d(x, w, self.bias, padding=self.padding)
