"""The one path every verb takes: read inputs (optionally aligning faces) → codes → code stacks →
images → files. The CLI only parses options and prints; everything it computes is here.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from .errors import InputError, UserError
from .io import modelfile
from .io.images import expand_inputs, pil_to_tensor, read_image, safe_stem, unique_names
from .hub.cache import is_shipped, resolve_model, user_copy_path
from .model import Automodulator, code_stack, mix_stack, parse_scales, slerp
from .model.provenance import align_warning, incomplete_training

LATENTS_FORMAT = "automod-latents"
ATTRIBUTES_FORMAT = "automod-attributes"


# --- models -----------------------------------------------------------------------------------

class ModelWarning(UserWarning):
    """A model used outside what it was trained for, or a snapshot of unfinished training."""


def load_model(model: str | Path | None, device: str | torch.device = "cpu") -> Automodulator:
    """Load the model ``model`` names: a file, a cached model's name (``ffhq256``), or None for the
    default model ($AUTOMOD_MODEL, else ``toy64``). A snapshot of unfinished training loads with a warning."""
    path = resolve_model(model)
    loaded = Automodulator.load(path, device=device)
    problem = incomplete_training(loaded.provenance, loaded.resolution)
    if problem:
        warnings.warn(f"{path}: {problem}", ModelWarning, stacklevel=2)
    return loaded


def warn_about_aligned_photos(model: Automodulator, align: bool) -> None:
    """With ``--align``: one warning when the model was not trained on faces like the ones --align makes."""
    message = align_warning(model.provenance) if align else None
    if message:
        warnings.warn(message, ModelWarning, stacklevel=2)


# --- inputs -----------------------------------------------------------------------------------

@dataclass
class Inputs:
    """Readable inputs as one tensor, with their output names; unreadable ones with reasons."""

    paths: list[Path] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    images: torch.Tensor | None = None
    failures: list[tuple[Path, str]] = field(default_factory=list)
    sidecars: list[dict | None] = field(default_factory=list)  # alignment records (with --align)

    def __len__(self) -> int:
        return len(self.paths)


def read_inputs(items: Sequence[str | Path], size: int, align: bool = False,
                align_options: dict[str, Any] | None = None) -> Inputs:
    """Files / folders / globs -> images at the model's resolution. Bad files are collected, not fatal.

    With ``align``, each photo's largest face is aligned the FFHQ way at ``size`` (its alignment record
    is kept for paste-back); a photo without a face is a failure like an unreadable file.
    """
    paths = expand_inputs(items)
    out = Inputs()
    images: list[torch.Tensor] = []
    aligner = None
    if align:
        from .align import align_faces  # dlib is only imported when alignment is asked for
        aligner = align_faces
    for p in paths:
        try:
            if aligner is not None:
                face = aligner(p, size, faces="largest", **(align_options or {}))[0]
                images.append(pil_to_tensor(face.image))
                out.sidecars.append(face.sidecar)
            else:
                images.append(read_image(p, size))
                out.sidecars.append(None)
            out.paths.append(p)
        except InputError as e:
            out.failures.append((p, str(e)))
    out.names = unique_names(out.paths)
    out.images = torch.stack(images) if images else torch.empty(0, 3, size, size)
    return out


def require_inputs(inputs: Inputs, what: str = "inputs") -> None:
    """All inputs unreadable: stop with the first reason (the rest are listed by the caller)."""
    if len(inputs) == 0:
        if inputs.failures:
            raise UserError(f"none of the {what} could be used; first: {inputs.failures[0][1]}")
        raise UserError(f"no {what} given")


# --- latents files ----------------------------------------------------------------------------

def save_latents(path: str | Path, codes: torch.Tensor, names: Sequence[str], model: Automodulator,
                 overwrite: bool = False) -> Path:
    meta = {
        "format": LATENTS_FORMAT,
        "names": list(names),
        "model": str(model.source_path) if model.source_path else "",
        "model_sha256": modelfile.file_sha256(model.source_path) if model.source_path else "",
        "config": model.config.to_dict(),
    }
    return modelfile.write_tensors(path, {"codes": codes}, meta, overwrite=overwrite)


def load_latents(path: str | Path, model: Automodulator) -> tuple[torch.Tensor, list[str]]:
    """Read a latents file and check it fits ``model``: codes [N, D] or stacks [N, n_blocks, D]."""
    tensors, meta = modelfile.read_tensors(path, what="latents file")
    if meta.get("format") != LATENTS_FORMAT or "codes" not in tensors:
        raise InputError("not an automod latents file (make one with 'automod encode')", path)
    codes = tensors["codes"].float()
    d, n = model.latent_dim, model.n_blocks
    if not ((codes.dim() == 2 and codes.shape[1] == d) or (codes.dim() == 3 and codes.shape[1:] == (n, d))):
        raise InputError(f"codes of shape {tuple(codes.shape)} do not fit this model "
                         f"(it takes [N, {d}] or [N, {n}, {d}])", path)
    if not torch.isfinite(codes).all():
        raise InputError("codes contain NaN or infinite values", path)
    try:
        names = json.loads(meta.get("names", "[]"))
    except json.JSONDecodeError:
        names = []
    if len(names) != codes.shape[0]:
        names = [f"code_{i:04d}" for i in range(codes.shape[0])]
    return codes, [safe_stem(x) for x in names]


# --- operations on codes ----------------------------------------------------------------------

def mix_codes(za: torch.Tensor, zb: torch.Tensor, blocks: list[int], n_blocks: int) -> torch.Tensor:
    """Per-row stacks: ``blocks`` from zb, the rest from za (both [B, D])."""
    return mix_stack(code_stack(za, n_blocks), zb, blocks)


def mix_matrix(model: Automodulator, za: torch.Tensor, zb: torch.Tensor, blocks: list[int],
               noise: bool = False, batch_size: int = 64) -> torch.Tensor:
    """All A×B mixes: [len(A), len(B), 3, R, R]; cell (i, j) has B_j at ``blocks``, A_i elsewhere."""
    na, nb = za.shape[0], zb.shape[0]
    a = za.repeat_interleave(nb, dim=0)
    b = zb.repeat(na, 1)
    out = model.decode(mix_codes(a, b, blocks, model.n_blocks), noise=noise, batch_size=batch_size)
    return out.reshape(na, nb, *out.shape[1:])


def matrix_grid(inputs_a: torch.Tensor, inputs_b: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
    """The paper's mixing figure: B inputs across the top, A inputs down the side, mixes inside."""
    na, nb = cells.shape[:2]
    blank = torch.ones_like(inputs_a[:1])
    rows = [torch.cat([blank, inputs_b.to(cells)])]
    for i in range(na):
        rows.append(torch.cat([inputs_a[i:i + 1].to(cells), cells[i]]))
    return torch.cat(rows)  # [(na+1)·(nb+1), 3, R, R], nb+1 per row


def interpolation_stacks(z_start: torch.Tensor, z_end: torch.Tensor, steps: int, blocks: list[int],
                         n_blocks: int) -> torch.Tensor:
    """[steps, n_blocks, D]: slerp from z_start to z_end at ``blocks``; other blocks stay at z_start."""
    if steps < 2:
        raise UserError(f"--steps must be at least 2, got {steps}")
    t = torch.linspace(0.0, 1.0, steps)
    path = slerp(z_start.expand(steps, -1), z_end.expand(steps, -1), t[:, None])
    return mix_stack(code_stack(z_start.expand(steps, -1), n_blocks), path, blocks)


def interpolation_square(z: torch.Tensor, steps: int, blocks: list[int], n_blocks: int) -> torch.Tensor:
    """Four corner codes (top-left, top-right, bottom-left, bottom-right) -> [steps², n_blocks, D]."""
    if steps < 2:
        raise UserError(f"--steps must be at least 2, got {steps}")
    t = torch.linspace(0.0, 1.0, steps)[:, None]
    top = slerp(z[0].expand(steps, -1), z[1].expand(steps, -1), t)
    bottom = slerp(z[2].expand(steps, -1), z[3].expand(steps, -1), t)
    rows = [slerp(top, bottom, float(s)) for s in t[:, 0]]
    grid = torch.cat(rows)  # row-major
    return mix_stack(code_stack(z[0].expand(grid.shape[0], -1), n_blocks), grid, blocks)


def attribute_direction(z_with: torch.Tensor, z_without: torch.Tensor) -> torch.Tensor:
    """δ = mean φ(x_with) − mean φ(x_without) (seed App. C)."""
    if z_with.shape[0] == 0 or z_without.shape[0] == 0:
        raise UserError("an attribute needs at least one image with it and one without it")
    return z_with.mean(0) - z_without.mean(0)


def save_attributes(path: str | Path, attributes: dict[str, Any], model: Automodulator,
                    overwrite: bool = False) -> Path:
    """A separate attribute file: ``attribute.<name>`` tensors + their info as metadata."""
    tensors = {f"attribute.{k}": a.delta for k, a in attributes.items()}
    meta = {"format": ATTRIBUTES_FORMAT, "latent_dim": str(model.latent_dim),
            "attributes": {k: {"scales": a.scales, **a.info} for k, a in attributes.items()}}
    return modelfile.write_tensors(path, tensors, meta, overwrite=overwrite)


def store_attribute(model: Automodulator, name: str, delta: torch.Tensor, scales: str | None, info: dict,
                    out: Path | None = None, overwrite: bool = False) -> tuple[Path, str | None]:
    """Add an attribute direction and write it: into ``out`` (a separate attribute file) if given, else
    into the model file, except a model that ships with automod, which is never rewritten: the model
    then goes, with the attribute, into the user's copy in the model cache. Returns where it was written
    and, for a copy, a sentence saying so."""
    if scales is not None:
        parse_scales(scales, model.n_blocks)  # validate now, not at edit time
    note = None
    if out is not None:
        target = Path(out)
        if target.exists():
            load_attributes(target, model)  # keep the other attributes of that file
    else:
        if model.source_path is None:
            raise UserError("this model has no file to add the attribute to; give --out FILE")
        target = model.source_path
        if is_shipped(target):
            target = user_copy_path(model.source_path)
            note = (f"{model.source_path} ships with automod and is never changed; the model with this attribute "
                    f"was written to your copy {target} (-m {target.stem}; it is also what the name "
                    f"'{target.stem}' and the default model now mean)")
    if name in model.attributes and not overwrite:
        raise UserError(f"attribute '{name}' exists already in {target} (use --overwrite to replace it)")
    model.set_attribute(name, delta, scales, info)
    if out is not None:
        save_attributes(target, dict(model.attributes), model, overwrite=True)
    else:
        if note is not None:
            model.provenance = {**model.provenance, "copied_from": {
                "path": str(model.source_path), "sha256": modelfile.file_sha256(model.source_path)}}
        model.save(target, overwrite=True)
        model.source_path = target
    return target, note


def load_attributes(path: str | Path, model: Automodulator) -> None:
    """Add the directions of an attribute file to ``model`` (in memory)."""
    tensors, meta = modelfile.read_tensors(path, what="attribute file")
    if meta.get("format") != ATTRIBUTES_FORMAT:
        raise InputError("not an automod attribute file (make one with 'automod attr add --out')", path)
    infos = json.loads(meta.get("attributes", "{}"))
    for name, info in infos.items():
        info = dict(info)
        scales = info.pop("scales", None)
        delta = tensors.get(f"attribute.{name}")
        if delta is None or delta.shape != (model.latent_dim,):
            raise InputError(f"attribute '{name}' is missing or does not fit this model's {model.latent_dim}-d codes", path)
        model.set_attribute(name, delta, scales, info)


# --- paste-back -------------------------------------------------------------------------------

def paste_into_photo(photo_path: Path, crop: torch.Tensor, sidecar: dict):
    """Warp an output crop back into the photo it was aligned from (PIL image at the photo's size)."""
    from .align import paste_back
    from .io.images import open_image, tensor_to_pil
    return paste_back(open_image(photo_path), tensor_to_pil(crop), sidecar)
