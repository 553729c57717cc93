"""automod: Deep Automodulators as a command-line suite and a small Python API.

    import automod_cli as am
    m = am.load()                       # the default model (or am.load("model.safetensors"), am.load("ffhq256"))
    z = m.encode(images)                # [B, 3, R, R] in [-1, 1] -> [B, 512] unit codes
    out = m.decode(am.mix_stack(am.code_stack(z_a, m.n_blocks), z_b, am.parse_scales("4-8", m.n_blocks)))
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

from .model import (Automodulator, ModelConfig, bundled_model_path, code_stack, edit_stack,  # noqa: E402
                    mix_stack, normalize, parse_scales, random_codes, slerp)


def load(path: str | Path | None = None, device: str = "cpu") -> Automodulator:
    """Load a model: a file, a cached model's name (``am.load("ffhq256")`` after ``automod pull ffhq256``),
    or the default model when ``path`` is None."""
    from .hub.cache import resolve_model

    return Automodulator.load(resolve_model(path), device=device)


__all__ = ["Automodulator", "ModelConfig", "__version__", "bundled_model_path", "code_stack", "edit_stack",
           "load", "mix_stack", "normalize", "parse_scales", "random_codes", "slerp"]
