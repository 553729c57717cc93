"""automod: Deep Automodulators as a command-line suite and a small Python API.

    import automod_cli as am
    m = am.load()                       # the bundled demo model (or am.load("model.safetensors"))
    z = m.encode(images)                # [B, 3, R, R] in [-1, 1] -> [B, 512] unit codes
    out = m.decode(am.mix_stack(am.code_stack(z_a, m.n_blocks), z_b, am.parse_scales("4-8", m.n_blocks)))
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

from .model import (Automodulator, ModelConfig, bundled_model_path, code_stack, edit_stack,  # noqa: E402
                    mix_stack, normalize, parse_scales, random_codes, slerp)


def load(path: str | Path | None = None, device: str = "cpu") -> Automodulator:
    """Load a model file (the bundled demo model when ``path`` is None)."""
    return Automodulator.load(path or bundled_model_path(), device=device)


__all__ = ["Automodulator", "ModelConfig", "__version__", "bundled_model_path", "code_stack", "edit_stack",
           "load", "mix_stack", "normalize", "parse_scales", "random_codes", "slerp"]
