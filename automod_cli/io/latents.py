"""Latents files: the codes ``encode`` writes and ``decode`` reads, in the format the suffix names.

- ``.safetensors``: tensor ``codes`` [N, D] (or stacks [N, n_blocks, D]); metadata ``format``
  ("automod-latents"), ``names`` (JSON list), ``model``, ``model_sha256``, ``config``.
- ``.npz`` (numpy, no pickles): arrays ``codes`` (float32), ``names`` (unicode strings),
  ``model_sha256`` and ``format``.
- ``.npy`` (numpy): the codes alone; their names go in ``NAME.names.txt`` beside it, one per line.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..errors import InputError, UserError
from . import modelfile
from .atomic import atomic_path, write_text_atomic
from .images import safe_stem

LATENTS_FORMAT = "automod-latents"
SUFFIXES = (".safetensors", ".npz", ".npy")


def names_file(path: str | Path) -> Path:
    """Where the names of a ``.npy`` latents file go: ``lat.npy`` -> ``lat.names.txt``."""
    path = Path(path)
    return path.with_name(path.stem + ".names.txt")


def check_latents_path(output: str, overwrite: bool = False) -> Path:
    """Refuse, before any work, an ``-o`` that is a folder, has no known suffix, or exists already."""
    path = Path(output)
    if output.endswith(("/", "\\")) or path.is_dir():
        raise UserError("is a folder; -o takes a latents file name such as "
                        f"{Path(output) / 'latents.safetensors'} (.safetensors, .npz or .npy)", output)
    if path.suffix.lower() not in SUFFIXES:
        got = f"'{path.suffix}'" if path.suffix else "no suffix"
        raise UserError(f"a latents file needs the suffix .safetensors, .npz or .npy (got {got})", output)
    if not overwrite:
        for target in [path] + ([names_file(path)] if path.suffix.lower() == ".npy" else []):
            if target.exists():
                raise UserError("exists already (use --overwrite to replace it)", target)
    return path


def save_latents(path: str | Path, codes: torch.Tensor, names: Sequence[str], model_meta: dict,
                 overwrite: bool = False) -> list[Path]:
    """Write codes and names in the format of ``path``'s suffix; returns the files written.

    ``model_meta`` holds ``model`` (path), ``model_sha256`` and ``config`` (a dict).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    codes = codes.detach().float().cpu()
    if suffix == ".npz":
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, codes=codes.numpy(), names=np.array(list(names), dtype=str),
                         model_sha256=np.array(model_meta.get("model_sha256", "")),
                         format=np.array(LATENTS_FORMAT))
        return [path]
    if suffix == ".npy":
        with atomic_path(path, overwrite=overwrite) as tmp:
            with open(tmp, "wb") as f:
                np.save(f, codes.numpy())
        listing = write_text_atomic(names_file(path), "".join(f"{n}\n" for n in names), overwrite=overwrite)
        return [path, listing]
    meta = {"format": LATENTS_FORMAT, "names": list(names), **model_meta}
    return [modelfile.write_tensors(path, {"codes": codes}, meta, overwrite=overwrite)]


def _read_numpy(path: Path) -> tuple[np.ndarray, list[str] | None]:
    try:
        if path.suffix.lower() == ".npy":
            codes = np.load(path, allow_pickle=False)
            listing = names_file(path)
            names = listing.read_text(encoding="utf-8").splitlines() if listing.exists() else None
            return codes, names
        with np.load(path, allow_pickle=False) as z:
            if "codes" not in z.files:
                raise InputError("not a latents file (an .npz without a 'codes' array; make one with "
                                 "'automod encode -o NAME.npz')", path)
            names = [str(n) for n in z["names"].tolist()] if "names" in z.files else None
            return z["codes"], names
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"not a readable numpy latents file ({str(e).splitlines()[0] if str(e) else e})",
                         path) from None


def load_latents(path: str | Path, latent_dim: int, n_blocks: int) -> tuple[torch.Tensor, list[str]]:
    """Read a latents file of any of the three formats; codes [N, D] or stacks [N, n_blocks, D]."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such latents file", path)
    if path.suffix.lower() in (".npy", ".npz"):
        array, names = _read_numpy(path)
        if array.dtype.kind not in "fiu":
            raise InputError(f"codes of type {array.dtype} are not numbers", path)
        codes = torch.from_numpy(np.ascontiguousarray(array)).float()
    else:
        tensors, meta = modelfile.read_tensors(path, what="latents file")
        if meta.get("format") != LATENTS_FORMAT or "codes" not in tensors:
            raise InputError("not an automod latents file (make one with 'automod encode')", path)
        codes = tensors["codes"].float()
        try:
            names = json.loads(meta.get("names", "[]"))
        except json.JSONDecodeError:
            names = None
    d, n = latent_dim, n_blocks
    if not ((codes.dim() == 2 and codes.shape[1] == d) or (codes.dim() == 3 and codes.shape[1:] == (n, d))):
        raise InputError(f"codes of shape {tuple(codes.shape)} do not fit this model "
                         f"(it takes [N, {d}] or [N, {n}, {d}])", path)
    if not torch.isfinite(codes).all():
        raise InputError("codes contain NaN or infinite values", path)
    if not names or len(names) != codes.shape[0]:
        names = [f"code_{i:04d}" for i in range(codes.shape[0])]
    return codes, [safe_stem(x) for x in names]
