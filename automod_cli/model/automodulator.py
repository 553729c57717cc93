"""An automodulator: encoder + (EMA) decoder + config + named attribute directions.

This is the object notebooks and every CLI verb use::

    m = Automodulator.load("weights/toy64.safetensors")
    z = m.encode(images)                      # [B, 3, R, R] in [-1, 1] -> [B, D] unit codes
    stack = code_stack(z_a, m.n_blocks)       # one code per block
    stack = mix_stack(stack, z_b, parse_scales("4-8", m.n_blocks))
    out = m.decode(stack)                     # [B, 3, R, R]
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import ModelFileError, UserError
from ..io import modelfile
from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder
from .layers import frozen_weights


@dataclass
class Attribute:
    """A named edit direction δ (mean code with − mean code without) and where it lives."""

    delta: torch.Tensor
    scales: str | None = None  # default scales for edits, e.g. "16-64"; None = all
    info: dict[str, Any] = field(default_factory=dict)


class Automodulator(nn.Module):
    def __init__(self, config: ModelConfig, provenance: dict | None = None):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.attributes: dict[str, Attribute] = {}
        self.provenance: dict[str, Any] = dict(provenance or {})
        self.source_path: Path | None = None

    # --- shape --------------------------------------------------------------------------------
    @property
    def n_blocks(self) -> int:
        return self.config.n_blocks

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # --- inference ------------------------------------------------------------------------------
    def _precision(self, precision: str):
        """fp32 (default), or bf16 autocast (CUDA; on CPUs with AVX-512 BF16 matmuls run ~1.5× faster)."""
        if precision == "fp32":
            return contextlib.nullcontext()
        if precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        raise UserError(f"unknown precision '{precision}' (use fp32 or bf16)")

    @contextlib.contextmanager
    def frozen(self):
        """Within this scope every encode/decode call reuses the run-time weights (scaled, spectrally
        normalised) that the first call computed, instead of computing them once per call: a data set
        streamed in many small batches pays for them once. The weights and the precision must not change
        inside the scope."""
        with frozen_weights(self.encoder), frozen_weights(self.decoder):
            yield

    @torch.no_grad()
    def encode(self, images: torch.Tensor, batch_size: int = 64, precision: str = "fp32") -> torch.Tensor:
        """Images [B, 3, R, R] in [-1, 1] -> unit-norm codes [B, D] (encoder in eval mode: frozen u)."""
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] != self.resolution \
                or images.shape[-2] != self.resolution:
            raise UserError(f"this model encodes [B, 3, {self.resolution}, {self.resolution}] images, "
                            f"got {tuple(images.shape)}")
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with self._precision(precision), frozen_weights(self.encoder):
                out = [self.encoder(chunk.to(self.device, torch.float32)).float() for chunk in images.split(batch_size)]
        finally:
            self.encoder.train(was_training)
        return torch.cat(out) if out else torch.empty(0, self.latent_dim, device=self.device)

    @torch.no_grad()
    def decode(self, codes: torch.Tensor, noise: bool = False, batch_size: int = 64,
               precision: str = "fp32") -> torch.Tensor:
        """Codes [B, D] or per-block stacks [B, n_blocks, D] -> images [B, 3, R, R]."""
        if codes.dim() not in (2, 3) or codes.shape[-1] != self.latent_dim or \
                (codes.dim() == 3 and codes.shape[1] != self.n_blocks):
            raise UserError(f"this model decodes codes [B, {self.latent_dim}] or [B, {self.n_blocks}, "
                            f"{self.latent_dim}], got {tuple(codes.shape)}")
        with self._precision(precision), frozen_weights(self.decoder):
            out = [self.decoder(chunk.to(self.device, torch.float32), noise=noise).float()
                   for chunk in codes.split(batch_size)]
        return torch.cat(out) if out else torch.empty(0, 3, self.resolution, self.resolution)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor, noise: bool = False, batch_size: int = 64,
                    precision: str = "fp32") -> torch.Tensor:
        return self.decode(self.encode(images, batch_size, precision), noise, batch_size, precision)

    # --- attributes -----------------------------------------------------------------------------
    def set_attribute(self, name: str, delta: torch.Tensor, scales: str | None = None,
                      info: dict | None = None) -> None:
        if delta.shape != (self.latent_dim,):
            raise UserError(f"attribute '{name}' must be a [{self.latent_dim}] vector, got {tuple(delta.shape)}")
        self.attributes[name] = Attribute(delta.detach().float().cpu(), scales, dict(info or {}))

    def attribute(self, name: str) -> Attribute:
        if name not in self.attributes:
            known = ", ".join(sorted(self.attributes)) or "none"
            raise UserError(f"unknown attribute '{name}' (this model has: {known}; add one with 'automod attr add')")
        return self.attributes[name]

    # --- files ----------------------------------------------------------------------------------
    def save(self, path: str | Path, overwrite: bool = True) -> Path:
        tensors = {f"encoder.{k}": v for k, v in self.encoder.state_dict().items()}
        tensors.update({f"decoder.{k}": v for k, v in self.decoder.state_dict().items()})
        tensors.update({f"attribute.{k}": a.delta for k, a in self.attributes.items()})
        meta = {
            "format": modelfile.FORMAT,
            "format_version": str(modelfile.FORMAT_VERSION),
            "config": self.config.to_dict(),
            "provenance": self.provenance,
            "attributes": {k: {"scales": a.scales, **a.info} for k, a in self.attributes.items()},
        }
        return modelfile.write_tensors(path, tensors, meta, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu") -> "Automodulator":
        tensors, meta = modelfile.read_tensors(path)
        header = modelfile.check_model_metadata(meta, path)
        try:
            config = ModelConfig.from_dict(header["config"])
        except (UserError, TypeError) as e:
            raise ModelFileError(f"bad model config ({e})", path) from None
        model = cls(config, provenance=header["provenance"])
        for part in ("encoder", "decoder"):
            sub = {k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")}
            module = getattr(model, part)
            expected = module.state_dict()
            missing = sorted(set(expected) - set(sub))
            unexpected = sorted(set(sub) - set(expected))
            wrong = sorted(k for k in set(sub) & set(expected) if sub[k].shape != expected[k].shape)
            if missing or unexpected or wrong:
                detail = "; ".join(f"{label}: {', '.join(keys[:3])}{'…' if len(keys) > 3 else ''}"
                                   for label, keys in (("missing", missing), ("unexpected", unexpected),
                                                       ("wrong shape", wrong)) if keys)
                raise ModelFileError(f"{part} weights do not match the config ({detail})", path)
            module.load_state_dict(sub)
        for name, info in header["attributes"].items():
            key = f"attribute.{name}"
            if key not in tensors:
                raise ModelFileError(f"attribute '{name}' is listed but its tensor is missing", path)
            info = dict(info)
            scales = info.pop("scales", None)
            model.set_attribute(name, tensors[key], scales, info)
        model.source_path = Path(path)
        return model.to(device).eval()

    def summary(self) -> dict[str, Any]:
        n_enc = sum(p.numel() for p in self.encoder.parameters())
        n_dec = sum(p.numel() for p in self.decoder.parameters())
        return {"config": self.config.to_dict(), "encoder_parameters": n_enc, "decoder_parameters": n_dec,
                "attributes": {k: {"scales": a.scales, **a.info} for k, a in self.attributes.items()},
                "provenance": self.provenance}

    def __repr__(self) -> str:  # short: the module tree is long
        return f"Automodulator({json.dumps(self.config.to_dict())})"
