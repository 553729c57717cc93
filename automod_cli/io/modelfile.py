"""The model file: one ``.safetensors`` file, tensors + JSON metadata, never a pickle.

Tensors:  ``encoder.*`` (spectral-norm ``u`` vectors included), ``decoder.*`` (the EMA decoder),
          ``attribute.<name>`` (one [D] direction per named attribute).
Metadata (all strings): ``format`` = "automod-model", ``format_version``, ``config`` (ModelConfig as
JSON), ``provenance`` (JSON: how it was made), ``attributes`` (JSON: per name, the scales it lives at
and how it was computed).
"""

from __future__ import annotations

import errno
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import ModelFileError
from .atomic import atomic_path

FORMAT = "automod-model"
FORMAT_VERSION = 1


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str]) -> None:
    """``safetensors.torch.save_file``, with its I/O failures raised as ``OSError`` (errno and message
    of the operating system) so that ``atomic_path`` reports them like any other failed write."""
    try:
        save_file(tensors, str(path), metadata=metadata)
    except SafetensorError as e:
        text = str(e)
        code = re.search(r"code: (\d+)", text)
        message = re.search(r'message: "([^"]*)"', text)
        raise OSError(int(code.group(1)) if code else errno.EIO,
                      message.group(1) if message else text) from None


def write_tensors(path: str | Path, tensors: dict[str, torch.Tensor], metadata: dict[str, Any],
                  overwrite: bool = True) -> Path:
    """Save tensors (made contiguous, on the CPU) with JSON-encoded metadata, atomically."""
    meta = {k: v if isinstance(v, str) else json.dumps(v, sort_keys=True) for k, v in metadata.items()}
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    with atomic_path(path, overwrite=overwrite) as tmp:
        save_safetensors(flat, tmp, meta)
    return Path(path)


def read_metadata(path: str | Path, what: str = "model file") -> dict[str, str]:
    """The JSON-able header of a safetensors file; ``what`` names the kind of file in errors."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"no such {what}", path)
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as e:
        article = "an" if what[0] in "aeiou" else "a"
        raise ModelFileError(f"not {article} {what} (cannot read it as safetensors: {e})", path) from None


def read_tensors(path: str | Path, device: str | torch.device = "cpu",
                 what: str = "model file") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    meta = read_metadata(path, what)
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            return {k: f.get_tensor(k) for k in f.keys()}, meta
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ModelFileError(f"corrupt {what} ({e})", path) from None


def check_model_metadata(meta: dict[str, str], path: str | Path) -> dict[str, Any]:
    """Validate the header of an automod model file; return the decoded JSON fields."""
    if meta.get("format") != FORMAT:
        hint = " (a reference .pth checkpoint? use 'automod convert')" if str(path).endswith((".pth", ".pt")) else ""
        raise ModelFileError(f"not an automod model file (no '{FORMAT}' header){hint}", path)
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        version = -1
    if version != FORMAT_VERSION:
        raise ModelFileError(f"model file format version {meta.get('format_version')} is not supported "
                             f"(this automod reads version {FORMAT_VERSION})", path)
    out: dict[str, Any] = {}
    for key in ("config", "provenance", "attributes"):
        try:
            out[key] = json.loads(meta.get(key, "{}"))
        except json.JSONDecodeError:
            raise ModelFileError(f"damaged '{key}' metadata", path) from None
    return out


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
