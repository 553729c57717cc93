"""The model core: config, layers, decoder, encoder, the Automodulator, codes and scales."""

from __future__ import annotations

from pathlib import Path

from .automodulator import Attribute, Automodulator
from .codes import normalize, parse_seeds, random_codes, seed_codes, slerp
from .config import ModelConfig
from .decoder import Decoder
from .encoder import Encoder
from .scales import code_stack, edit_stack, group_ranges, mix_stack, parse_scales

WEIGHTS_DIR = Path(__file__).resolve().parents[2] / "weights"
BUNDLED_MODEL_NAME = "toy64.safetensors"


def bundled_model_path() -> Path:
    """The default model file: $AUTOMOD_MODEL (a path or a cached model's name) if set, else ``toy64``
    (your copy in the model cache if you made one with ``attr add``, else the bundled demo model)."""
    from ..hub.cache import resolve_model

    return resolve_model(None)


__all__ = ["Attribute", "Automodulator", "Decoder", "Encoder", "ModelConfig", "bundled_model_path",
           "code_stack", "edit_stack", "group_ranges", "mix_stack", "normalize", "parse_scales",
           "parse_seeds", "random_codes", "seed_codes", "slerp"]
