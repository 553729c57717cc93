"""How far bf16 inference is from fp32: the figures quoted in the verbs' --precision help.

    python benchmarks/bench_precision.py

For the bundled toy64 model (64 held-out toy faces, seed 424242) and a random-weight full-width 256²
model (8 toy faces): the smallest cosine between fp32 and bf16 codes of the same image, and the
difference of the reconstructions in 8-bit steps (mean, 99th percentile, max over pixels and channels).
"""

from __future__ import annotations

import torch

import automod_cli as am
from automod_cli.data import toyfaces
from automod_cli.model import Automodulator, ModelConfig


def measure(model: Automodulator, x: torch.Tensor, label: str) -> None:
    z32, z16 = model.encode(x, 16, "fp32"), model.encode(x, 16, "bf16")
    cos = torch.nn.functional.cosine_similarity(z32, z16).min().item()
    y32 = model.decode(z32, batch_size=16).clamp(-1, 1)
    y16 = model.reconstruct(x, batch_size=16, precision="bf16").clamp(-1, 1)
    d = (y32 - y16).abs().flatten() * 127.5
    print(f"{label}: codes cosine min {cos:.6f}; reconstructions differ by {d.mean():.2f}/255 on average, "
          f"99th percentile {d.quantile(0.99):.1f}/255, max {d.max():.1f}/255")


def main() -> None:
    torch.manual_seed(0)
    measure(am.load(), toyfaces.render_tensor(toyfaces.sample_rows(64, seed=424242), 64), "bundled toy64")
    big = Automodulator(ModelConfig(resolution=256, variant="large", width=1.0, latent_dim=512)).eval()
    measure(big, toyfaces.render_tensor(toyfaces.sample_rows(8, seed=1), 256), "256² full width, random weights")


if __name__ == "__main__":
    main()
