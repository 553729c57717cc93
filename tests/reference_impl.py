"""Test helper: the reference automodulator (AaltoVision/automodulator, pioneer/model.py) as plain
functions over its own checkpoint format, written from the converter fact sheet
(shared/reference/official-checkpoint-keys.md), independently of automod_cli.model.

* ``make_reference_checkpoint(variant, phase, seed, path=None)`` builds a checkpoint dict laid out like
  ``Session.save_all`` (random weights, every key, aliases as the same tensor objects) and optionally
  ``torch.save``s it.
* ``reference_decode(g_sd, z, phase, alpha)`` / ``reference_encode(d_sd, snu, x, phase, alpha)`` run the
  reference Generator / Discriminator(binary_predictor=False) in eval mode with layer noise off, reading
  the ``module.``-prefixed state dicts directly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F

NZ = 512
G_CHANNELS = {"large": [512, 512, 512, 512, 512, 256, 128, 64, 32],
              "small": [512, 512, 512, 512, 256, 128, 64, 32, 16]}
# Discriminator progression k maps D_IN[k] -> D_OUT[k]; from_rgb.k maps 3 -> D_IN[k].
D_IN = [16, 32, 64, 128, 256, 512, 512, 512, 512]
D_OUT = [32, 64, 128, 256, 512, 512, 512, 512, 512]
M = "module."


# --- building a checkpoint -----------------------------------------------------------------------

def _generator_state_dict(variant: str, gen: torch.Generator) -> OrderedDict:
    ch = G_CHANNELS[variant]
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()

    def randn(*shape, std=1.0):
        return torch.randn(*shape, generator=gen) * std

    def equal_conv(prefix: str, c_out: int, c_in: int, k: int = 3):
        sd[f"{prefix}.bias"] = randn(c_out, std=0.1)
        sd[f"{prefix}.weight_orig"] = randn(c_out, c_in, k, k)
        # Trained checkpoints store 1.0; other values make the tests check that the gain is applied.
        sd[f"{prefix}.weight_gain"] = 0.8 + 0.4 * torch.rand(1, generator=gen)

    sd[M + "label_embed.weight"] = randn(1, 1)
    adanorms = []
    for k in range(17):
        c = ch[(k + 1) // 2]
        w = randn(2 * c, NZ, std=math.sqrt(2.0 / (2 * c + NZ)))  # xavier normal
        b = 1.0 + randn(2 * c, std=0.2)
        sd[f"{M}adanorm_blocks.{k}.mod.weight"] = w
        sd[f"{M}adanorm_blocks.{k}.mod.bias"] = b
        adanorms.append((w, b))
    for i in range(9):
        p = f"{M}progression.{i}.conv"
        if i == 0:
            equal_conv(f"{p}.1.conv", ch[0], 512)
            sd[f"{p}.3.mod.weight"], sd[f"{p}.3.mod.bias"] = adanorms[0]  # aliases: the same tensors
        else:
            equal_conv(f"{p}.0.0.conv", ch[i], ch[i - 1])
            sd[f"{p}.0.3.mod.weight"], sd[f"{p}.0.3.mod.bias"] = adanorms[2 * i - 1]
            equal_conv(f"{p}.1.conv", ch[i], ch[i])
            sd[f"{p}.3.mod.weight"], sd[f"{p}.3.mod.bias"] = adanorms[2 * i]
    for i in range(9):
        sd[f"{M}to_rgb.{i}.weight"] = randn(3, ch[i], 1, 1, std=1.0 / math.sqrt(ch[i]))
        sd[f"{M}to_rgb.{i}.bias"] = randn(3, std=0.1)
    for i in range(9):
        for j in range(2):
            sd[f"{M}noise.{i}.{j}.noise_scale"] = randn(ch[i], std=0.1)
    for j in range(2):
        sd[f"{M}z_preprocess.{j}.0.bias"] = torch.zeros(NZ)
        sd[f"{M}z_preprocess.{j}.0.weight_orig"] = randn(NZ, NZ)
        sd[f"{M}z_preprocess.{j}.0.weight_gain"] = torch.tensor([0.01])
    return sd


def _discriminator_state_dict(gen: torch.Generator) -> tuple[OrderedDict, list[torch.Tensor]]:
    sd: OrderedDict[str, torch.Tensor] = OrderedDict()
    snu = []
    for k in range(9):
        for j, (c_in, ksize) in ((0, (D_IN[k], 3)), (2, (D_OUT[k], 4 if k == 8 else 3))):
            fan_in = c_in * ksize * ksize
            sd[f"{M}progression.{k}.conv.{j}.conv.bias"] = torch.randn(D_OUT[k], generator=gen) * 0.1
            sd[f"{M}progression.{k}.conv.{j}.conv.weight_orig"] = \
                torch.randn(D_OUT[k], c_in, ksize, ksize, generator=gen) * math.sqrt(2.0 / fan_in)
            snu.append(torch.randn(D_OUT[k], 1, generator=gen) * 0.1)  # the reference's initial u
    for k in range(9):
        sd[f"{M}from_rgb.{k}.weight"] = torch.randn(D_IN[k], 3, 1, 1, generator=gen) / math.sqrt(3)
        sd[f"{M}from_rgb.{k}.bias"] = torch.randn(D_IN[k], generator=gen) * 0.1
    return sd, snu


def _adam_state(n_slots: int) -> dict:
    return {"state": {}, "param_groups": [{"lr": 0.001, "betas": (0.0, 0.99), "eps": 1e-8, "weight_decay": 0,
                                           "amsgrad": False, "params": list(range(n_slots))}]}


def make_reference_checkpoint(variant: str = "large", phase: int = 6, seed: int = 0,
                              path: str | Path | None = None, alpha: float = 1.0,
                              iteration: int = 123456) -> dict:
    """A checkpoint in the reference's ``Session.save_all`` layout with random weights.

    ``G_state_dict`` (training weights) differs from ``G_running_state_dict`` (EMA), as in any trained
    checkpoint, so a converter that reads the wrong one fails the parity tests.
    """
    gen = torch.Generator().manual_seed(seed)
    g_running = _generator_state_dict(variant, gen)
    g_train = _generator_state_dict(variant, gen)
    d, snu = _discriminator_state_dict(gen)
    ck = {
        "G_state_dict": g_train,
        "D_state_dict": d,
        "G_running_state_dict": g_running,
        "optimizerD": _adam_state(72),
        "optimizerG": _adam_state(128),
        "optimizerA": _adam_state(34),
        "iteration": iteration,
        "phase": phase,
        "alpha": alpha,
        "SNU": snu,
    }
    for j in range(9):
        n = 48 * 4**j
        ck[f"adaptive_loss_{j}"] = ({"latent_alpha": torch.zeros(1, n), "latent_scale": torch.zeros(1, n)},)
    if path is not None:
        torch.save(ck, path)
    return ck


# --- the reference networks ----------------------------------------------------------------------

def _equal_conv(sd, prefix: str, x: torch.Tensor) -> torch.Tensor:
    w = sd[prefix + ".weight_orig"]
    fan_in = w.shape[1] * w.shape[2] * w.shape[3]
    w = w * math.sqrt(2.0 / fan_in) * sd[prefix + ".weight_gain"]
    return F.conv2d(x, w, sd[prefix + ".bias"], padding=1)


def _adanorm(sd, prefix: str, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    a = z @ sd[prefix + ".mod.weight"].t() + sd[prefix + ".mod.bias"]
    c = x.shape[1]
    gamma, beta = a[:, :c], a[:, c:]
    mu = x.mean(dim=(2, 3), keepdim=True)
    sd_ = x.std(dim=(2, 3), keepdim=True, unbiased=True)  # no epsilon
    return gamma[:, :, None, None] * (x - mu) / sd_ + beta[:, :, None, None]


def _blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]]) / 16.0
    c = x.shape[1]
    return F.conv2d(x, k.to(x.dtype).repeat(c, 1, 1, 1), padding=1, groups=c)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


def _generator_block(sd, i: int, x: torch.Tensor | None, z: torch.Tensor) -> torch.Tensor:
    p = f"{M}progression.{i}.conv"
    if i == 0:
        x = torch.ones(z.shape[0], 512, 4, 4, dtype=z.dtype)
        return _adanorm(sd, f"{p}.3", _lrelu(_equal_conv(sd, f"{p}.1.conv", x)), z)
    x = F.interpolate(x, scale_factor=2, mode="nearest")
    x = _lrelu(_blur(_equal_conv(sd, f"{p}.0.0.conv", x)))
    x = _adanorm(sd, f"{p}.0.3", x, z)
    x = _lrelu(_equal_conv(sd, f"{p}.1.conv", x))
    return _adanorm(sd, f"{p}.3", x, z)


def _to_rgb(sd, i: int, x: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, sd[f"{M}to_rgb.{i}.weight"], sd[f"{M}to_rgb.{i}.bias"])


@torch.no_grad()
def reference_decode(g_sd, z, phase: int, alpha: float = 1.0) -> torch.Tensor:
    """Generator(z, step=phase, alpha), eval, no layer noise.

    ``z`` is [B, 512] or a list of phase + 1 tensors [B, 512]: block i modulated by ``z[i]``, which is what
    the reference's multi-call scale mixing (``utils.gen_seq``) computes.
    """
    zs = list(z) if isinstance(z, (list, tuple)) else [z] * (phase + 1)
    x = prev = None
    for i in range(phase + 1):
        prev = x
        x = _generator_block(g_sd, i, x, zs[i])
    rgb = _to_rgb(g_sd, phase, x)
    if 0 <= alpha < 1 and phase > 0:
        skip = _to_rgb(g_sd, phase - 1, F.interpolate(prev, scale_factor=2, mode="nearest"))
        rgb = (1 - alpha) * skip + alpha * rgb
    return rgb


def _sn_conv(sd, prefix: str, u: torch.Tensor, x: torch.Tensor, padding: int) -> torch.Tensor:
    w = sd[prefix + ".weight_orig"]
    wm = w.view(w.shape[0], -1)
    v = wm.t() @ u
    v = v / v.norm()
    u2 = wm @ v
    u2 = u2 / u2.norm()
    sigma = (u2.t() @ wm @ v).squeeze()
    return F.conv2d(x, w / sigma, sd[prefix + ".bias"], padding=padding)


@torch.no_grad()
def reference_encode(d_sd, snu, x: torch.Tensor, phase: int, alpha: float = 1.0) -> torch.Tensor:
    """Discriminator(binary_predictor=False)(x, step=phase, alpha) with frozen u, then normalize."""
    idx0 = 8 - phase
    h = F.conv2d(x, d_sd[f"{M}from_rgb.{idx0}.weight"], d_sd[f"{M}from_rgb.{idx0}.bias"])
    for i in range(phase, -1, -1):
        k = 8 - i
        p = f"{M}progression.{k}.conv"
        h = _lrelu(_sn_conv(d_sd, f"{p}.0.conv", snu[2 * k], h, 1))
        h = _sn_conv(d_sd, f"{p}.2.conv", snu[2 * k + 1], h, 0 if k == 8 else 1)
        if k != 8:
            h = _lrelu(h)  # the last block's activation is LeakyReLU(1.0), the identity
        if i > 0:
            h = F.avg_pool2d(h, 2)
        if i == phase and 0 <= alpha < 1 and phase > 0:
            skip = F.conv2d(F.avg_pool2d(x, 2), d_sd[f"{M}from_rgb.{idx0 + 1}.weight"],
                            d_sd[f"{M}from_rgb.{idx0 + 1}.bias"])
            h = (1 - alpha) * skip + alpha * h
    z = h.reshape(x.shape[0], NZ)
    return z / z.norm(dim=1, keepdim=True)
