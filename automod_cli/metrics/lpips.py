"""LPIPS (Zhang et al. 2018) through the ``lpips`` package, version 0.1, with explicit backbone weights.

The package's linear calibration layers ship inside it; the backbone (AlexNet or VGG16) is built with
random weights and then loaded from the file that ``weights.resolve`` finds, so nothing is ever
downloaded silently and the backbone's hash is known.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..errors import InputError, UserError
from .weights import WeightsFile, load_state_dict, resolve

BACKBONES = {"alex": "alexnet", "vgg": "vgg16"}


def face_crop(images: torch.Tensor) -> torch.Tensor:
    """The paper's face crop ``img[:, :, 3c:7c, 2c:6c]``, ``c = H // 8`` (rows 3/8–7/8, columns 1/4–3/4)."""
    c = images.shape[-2] // 8
    return images[..., 3 * c:7 * c, 2 * c:6 * c]


def load_backbone(model, state_dict: dict, source: str) -> None:
    """Copy torchvision ``features.<i>.*`` tensors into the package's ``net.slice<k>.<i>.*`` layout."""
    targets = dict(model.net.named_parameters())
    mapped = {}
    for name, param in targets.items():
        _slice, index, kind = name.split(".")
        key = f"features.{index}.{kind}"
        if key not in state_dict:
            raise InputError(f"not a {model.pnet_type} backbone state dict (no '{key}')", source)
        if tuple(state_dict[key].shape) != tuple(param.shape):
            raise InputError(f"'{key}' has shape {tuple(state_dict[key].shape)}, expected {tuple(param.shape)}",
                             source)
        mapped[name] = state_dict[key]
    model.net.load_state_dict(mapped, strict=True)


class LPIPSDistance:
    """Per-image LPIPS between two batches in [-1, 1], on one device, with its weights' provenance."""

    def __init__(self, net: str = "alex", weights_dir: str | Path | None = None, device="cpu",
                 weights: WeightsFile | None = None):
        import lpips as lpips_pkg

        if net not in BACKBONES:
            raise ValueError(f"unknown LPIPS network '{net}' (use {', '.join(BACKBONES)})")
        self.net_name = net
        self.weights = weights or resolve(BACKBONES[net], weights_dir)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notice for 'pretrained'
            model = lpips_pkg.LPIPS(pretrained=True, net=net, version="0.1", pnet_rand=True, verbose=False)
        load_backbone(model, load_state_dict(self.weights), str(self.weights.path))
        self.device = torch.device(device)
        self.model = model.to(self.device).eval().requires_grad_(False)
        self.variant = f"lpips {net} v0.1"

    @torch.no_grad()
    def __call__(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] x2 in [-1, 1] -> [B] distances (float32, on CPU)."""
        if a.shape != b.shape:
            raise ValueError(f"image batches of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
        try:
            d = self.model(a.to(self.device).float(), b.to(self.device).float())
        except RuntimeError as e:
            if "too small" not in str(e):
                raise
            raise UserError(f"images of {a.shape[-1]}x{a.shape[-2]} px (after any crop) are too small for "
                            f"LPIPS {self.net_name}; use larger images or --crop none") from None
        return d.reshape(-1).float().cpu()
