"""The one path every verb takes: read inputs (optionally aligning faces) → codes → code stacks →
images → files. The CLI only parses options and prints; everything it computes is here.

Data sets stream: the ``*_to_folder`` operations and ``render_frames`` take an ``ImageStream`` (or
codes) and write each batch's outputs as it finishes (``automod_cli/streaming.py``); ``read_inputs``
keeps a small set in memory (mix matrices, attribute examples).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import torch

from .errors import InputError, UserError
from .hub.cache import is_shipped, resolve_model, user_copy_path
from .io import latents, modelfile
from .io.images import expand_inputs, make_grid, save_image, save_pil, to_uint8
from .model import Automodulator, code_stack, edit_stack, mix_stack, parse_scales, slerp
from .model.provenance import align_warning, incomplete_training
from .streaming import BackgroundWriter, ImageStream, code_batches

LATENTS_FORMAT = latents.LATENTS_FORMAT
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
                align_options: dict[str, Any] | None = None, workers: int | None = 0) -> Inputs:
    """Files / folders / globs -> images at the model's resolution, all in memory (small sets only:
    data sets go through ``ImageStream``). Bad files are collected, not fatal; crops and resizes are
    summarised in one warning per original size.

    With ``align``, each photo's largest face is aligned the FFHQ way at ``size`` (its alignment record
    is kept for paste-back); a photo without a face is a failure like an unreadable file.
    """
    stream = ImageStream(expand_inputs(items), size, batch_size=64, workers=workers, align=align,
                         align_options=align_options)
    out = Inputs()
    images = []
    for batch in stream:
        out.paths += batch.paths
        out.names += batch.names
        out.sidecars += batch.sidecars
        images.append(batch.float_images())
    out.failures = stream.failures
    out.images = torch.cat(images) if images else torch.empty(0, 3, size, size)
    stream.warn_fits()
    return out


def require_inputs(inputs: Inputs, what: str = "inputs") -> None:
    """All inputs unreadable: stop with the first reason (the rest are listed by the caller)."""
    if len(inputs) == 0:
        if inputs.failures:
            raise UserError(f"none of the {what} could be used; first: {inputs.failures[0][1]}")
        raise UserError(f"no {what} given")


# --- latents files ----------------------------------------------------------------------------

def model_record(model: Automodulator) -> dict[str, Any]:
    """What a latents file says about the model that made its codes."""
    return {"model": str(model.source_path) if model.source_path else "",
            "model_sha256": modelfile.file_sha256(model.source_path) if model.source_path else "",
            "config": model.config.to_dict()}


def save_latents(path: str | Path, codes: torch.Tensor, names: Sequence[str], model: Automodulator,
                 overwrite: bool = False) -> Path:
    """Write a latents file in the format its suffix names (.safetensors, .npz or .npy + names file)."""
    return latents.save_latents(path, codes, names, model_record(model), overwrite=overwrite)[0]


def load_latents(path: str | Path, model: Automodulator) -> tuple[torch.Tensor, list[str]]:
    """Read a latents file and check it fits ``model``: codes [N, D] or stacks [N, n_blocks, D]."""
    return latents.load_latents(path, model.latent_dim, model.n_blocks)


# --- operations on codes ----------------------------------------------------------------------

def mix_codes(za: torch.Tensor, zb: torch.Tensor, blocks: list[int], n_blocks: int) -> torch.Tensor:
    """Per-row stacks: ``blocks`` from zb, the rest from za (both [B, D])."""
    return mix_stack(code_stack(za, n_blocks), zb, blocks)


def mix_matrix(model: Automodulator, za: torch.Tensor, zb: torch.Tensor, blocks: list[int],
               noise: bool = False, batch_size: int = 64, precision: str = "fp32") -> torch.Tensor:
    """All A×B mixes: [len(A), len(B), 3, R, R]; cell (i, j) has B_j at ``blocks``, A_i elsewhere."""
    na, nb = za.shape[0], zb.shape[0]
    a = za.repeat_interleave(nb, dim=0)
    b = zb.repeat(na, 1)
    out = model.decode(mix_codes(a, b, blocks, model.n_blocks), noise=noise, batch_size=batch_size,
                       precision=precision)
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


# --- streaming operations: data-set-scale verbs ------------------------------------------------
# Inputs are read ahead by an ImageStream, each batch is computed and its outputs are handed to a
# BackgroundWriter, so memory holds a few batches (and the codes) whatever the number of inputs.

GRID_MAX = 64  # comparison grids hold at most this many inputs (they are for looking at, not archiving)

Progress = Callable[[int], None]


def _no_progress(_n: int) -> None:
    pass


def check_output_folder(folder: Path) -> None:
    """``-o`` names a folder (created as needed): refuse an existing file of that name up front."""
    if folder.exists() and not folder.is_dir():
        raise UserError("is a file, but -o takes a folder here (it is created if needed)", folder)


def check_outputs_free(paths: Sequence[Path], overwrite: bool) -> None:
    """Refuse, before any work, outputs that exist already (unless ``overwrite``)."""
    if overwrite:
        return
    taken = [p for p in paths if p.exists()]
    if taken:
        more = f" (and {len(taken) - 1} more of the outputs)" if len(taken) > 1 else ""
        raise UserError(f"exists already{more} (use --overwrite to replace)", taken[0])


def _save_paste_back(photo_path: Path, crop: torch.Tensor, sidecar: dict, target: Path, overwrite: bool) -> None:
    save_pil(paste_into_photo(photo_path, crop, sidecar), target, overwrite=overwrite)


def grid_wanted(grid: bool | None, n: int) -> bool:
    """A grid by default only for small sets; ``grid=True`` asks for one (of the first GRID_MAX)."""
    return n <= GRID_MAX if grid is None else grid


@dataclass
class Written:
    """What a streaming operation did: outputs computed, skipped inputs, the grid file if any."""

    count: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    grid: Path | None = None


def encode_stream(model: Automodulator, stream: ImageStream, precision: str = "fp32",
                  progress: Progress = _no_progress) -> tuple[torch.Tensor, list[str]]:
    """Codes [N, D] (on the CPU) and names of the readable inputs; the stream keeps the failures."""
    # One buffer for all the codes, allocated before the first batch: small code tensors kept one per
    # batch would split the freed batch-sized blocks that the allocator keeps for the next batch
    # (streaming.keep_freed_memory), and the heap grew by about a batch of images per batch.
    codes, names = torch.empty(len(stream), model.latent_dim), []
    with model.frozen():
        for batch in stream:
            if len(batch):
                z = model.encode(batch.float_images(model.device), len(batch), precision)
                codes[len(names):len(names) + len(z)] = z.float().cpu()
                names += batch.names
            progress(batch.count)
    return (codes if len(names) == len(codes) else codes[:len(names)].clone()), names


def reconstruct_to_folder(model: Automodulator, stream: ImageStream, out_dir: Path, *, noise: bool = False,
                          precision: str = "fp32", overwrite: bool = False, grid: bool | None = None,
                          paste_back: bool = False, progress: Progress = _no_progress) -> Written:
    """``out_dir/NAME.png`` per input (and ``NAME_photo.png`` with ``paste_back``), ``comparison.png``
    (input | output pairs) for small sets or when asked."""
    out_dir = Path(out_dir)
    want_grid = grid_wanted(grid, len(stream))
    check_output_folder(out_dir)
    targets = [out_dir / f"{n}.png" for n in stream.names]
    if paste_back:
        targets += [out_dir / f"{n}_photo.png" for n in stream.names]
    check_outputs_free(targets + ([out_dir / "comparison.png"] if want_grid else []), overwrite)
    done = Written()
    shown: list[torch.Tensor] = []
    with BackgroundWriter() as writer, model.frozen():
        for batch in stream:
            if len(batch):
                x = batch.float_images(model.device)
                out = model.reconstruct(x, noise, len(batch), precision).cpu()
                for name, img in zip(batch.names, out):
                    writer.submit(save_image, img, out_dir / f"{name}.png", overwrite)
                if paste_back:
                    for path, name, crop, sidecar in zip(batch.paths, batch.names, out, batch.sidecars):
                        writer.submit(_save_paste_back, path, crop, sidecar, out_dir / f"{name}_photo.png", overwrite)
                room = GRID_MAX - len(shown) // 2
                if want_grid and room > 0:
                    pairs = torch.stack([x[:room].cpu(), out[:room]], dim=1).reshape(-1, *out.shape[1:])
                    shown += list(pairs)
                done.count += len(batch)
            progress(batch.count)
        if want_grid and shown:
            done.grid = out_dir / "comparison.png"
            nrow = min(8, len(shown)) // 2 * 2 or 2
            writer.submit(save_image, make_grid(torch.stack(shown), nrow=nrow), done.grid, overwrite)
    done.failures = stream.failures
    return done


def edit_to_folder(model: Automodulator, stream: ImageStream, attr: str, strength: float, blocks: list[int],
                   out_dir: Path, *, noise: bool = False, precision: str = "fp32", overwrite: bool = False,
                   paste_back: bool = False, progress: Progress = _no_progress) -> Written:
    """``out_dir/NAME_ATTR.png``: each input's code plus ``strength``·δ at ``blocks``, decoded."""
    out_dir = Path(out_dir)
    delta = model.attribute(attr).delta
    check_output_folder(out_dir)
    targets = [out_dir / f"{n}_{attr}.png" for n in stream.names]
    if paste_back:
        targets += [out_dir / f"{n}_photo.png" for n in stream.names]
    check_outputs_free(targets, overwrite)
    done = Written()
    with BackgroundWriter() as writer, model.frozen():
        for batch in stream:
            if len(batch):
                z = model.encode(batch.float_images(model.device), len(batch), precision)
                stacks = edit_stack(code_stack(z, model.n_blocks), delta.to(z), strength, blocks)
                out = model.decode(stacks, noise, len(batch), precision).cpu()
                for name, img in zip(batch.names, out):
                    writer.submit(save_image, img, out_dir / f"{name}_{attr}.png", overwrite)
                if paste_back:
                    for path, name, crop, sidecar in zip(batch.paths, batch.names, out, batch.sidecars):
                        writer.submit(_save_paste_back, path, crop, sidecar, out_dir / f"{name}_photo.png", overwrite)
                done.count += len(batch)
            progress(batch.count)
    done.failures = stream.failures
    return done


def decode_batches(model: Automodulator, codes: torch.Tensor, batch_size: int, *, noise: bool = False,
                   precision: str = "fp32", seeds: Sequence[int] | None = None) -> Iterator[torch.Tensor]:
    """Images (on the CPU) of ``codes`` ([N, D] or stacks), one batch at a time.

    With ``seeds`` and ``noise``, each image's layer noise is drawn from its own seed (one image per
    call), so a seed gives the same image whatever else is decoded with it.
    """
    with model.frozen():
        if noise and seeds is not None:
            for seed, code in zip(seeds, codes.split(1)):
                torch.manual_seed(int(seed))
                yield model.decode(code, True, 1, precision).cpu()
            return
        for _start, chunk in code_batches(codes, batch_size):
            yield model.decode(chunk, noise, batch_size, precision).cpu()


def decode_to_folder(model: Automodulator, codes: torch.Tensor, names: Sequence[str], out_dir: Path, *,
                     batch_size: int = 16, noise: bool = False, precision: str = "fp32", overwrite: bool = False,
                     grid: bool | None = False, grid_first: torch.Tensor | None = None,
                     seeds: Sequence[int] | None = None, progress: Progress = _no_progress) -> Written:
    """``out_dir/NAME.png`` per code; with a grid (``grid_wanted``) also ``grid.png`` of the first
    GRID_MAX images, led by ``grid_first`` (e.g. the kept image of conditional samples)."""
    out_dir = Path(out_dir)
    want_grid = grid_wanted(grid, len(names))
    check_output_folder(out_dir)
    check_outputs_free([out_dir / f"{n}.png" for n in names] + ([out_dir / "grid.png"] if want_grid else []),
                       overwrite)
    done = Written()
    shown: list[torch.Tensor] = list(grid_first) if grid_first is not None else []
    with BackgroundWriter() as writer:
        k = 0
        for out in decode_batches(model, codes, batch_size, noise=noise, precision=precision, seeds=seeds):
            for img in out:
                writer.submit(save_image, img, out_dir / f"{names[k]}.png", overwrite)
                k += 1
            if want_grid:
                shown += list(out[:max(0, GRID_MAX - len(shown))])
            done.count += len(out)
            progress(len(out))
        if want_grid and shown:
            done.grid = out_dir / "grid.png"
            writer.submit(save_image, make_grid(torch.stack(shown), nrow=min(8, len(shown))), done.grid, overwrite)
    return done


class GridCanvas:
    """A grid image filled one batch at a time (uint8: a quarter of the memory of the float images)."""

    def __init__(self, n: int, nrow: int, size: int, padding: int = 2):
        rows = (n + nrow - 1) // nrow
        self.nrow, self.size, self.padding = nrow, size, padding
        self.canvas = torch.full((3, rows * (size + padding) + padding, nrow * (size + padding) + padding), 255,
                                 dtype=torch.uint8)
        self.count = 0

    def add(self, images: torch.Tensor) -> None:
        for img in to_uint8(images):
            r, c = divmod(self.count, self.nrow)
            y, x = self.padding + r * (self.size + self.padding), self.padding + c * (self.size + self.padding)
            self.canvas[:, y:y + self.size, x:x + self.size] = img
            self.count += 1

    def image(self):
        from PIL import Image

        return Image.fromarray(self.canvas.permute(1, 2, 0).contiguous().numpy(), "RGB")


def render_frames(model: Automodulator, stacks: torch.Tensor, *, nrow: int, grid_path: Path | None = None,
                  frames_dir: Path | None = None, video=None, batch_size: int = 16, noise: bool = False,
                  precision: str = "fp32", overwrite: bool = False, progress: Progress = _no_progress) -> Written:
    """Decode ``stacks`` batch by batch into any of: a grid image (``nrow`` per row), one PNG per frame
    in ``frames_dir``, a ``VideoWriter``."""
    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        check_output_folder(frames_dir)
    frame_paths = [frames_dir / f"frame_{k:04d}.png" for k in range(len(stacks))] if frames_dir else []
    check_outputs_free(frame_paths + ([Path(grid_path)] if grid_path else []), overwrite)
    canvas = GridCanvas(len(stacks), nrow, model.resolution) if grid_path else None
    done = Written()
    with BackgroundWriter() as writer:
        for out in decode_batches(model, stacks, batch_size, noise=noise, precision=precision):
            for img in out:
                if frames_dir is not None:
                    writer.submit(save_image, img, frame_paths[done.count], overwrite)
                done.count += 1
            if canvas is not None:
                canvas.add(out)
            if video is not None:
                video.add(out)
            progress(len(out))
        if canvas is not None:
            writer.submit(save_pil, canvas.image(), Path(grid_path), overwrite)
            done.grid = Path(grid_path)
    if video is not None:
        video.close()
    return done


def mix_pairs_to_folder(model: Automodulator, rows: Sequence[tuple[str, str, int]], stream: ImageStream,
                        blocks: list[int], out_dir: Path, *, source: str = "pairs", noise: bool = False,
                        precision: str = "fp32", overwrite: bool = False,
                        progress: Progress = _no_progress) -> Written:
    """One mix per row (a, b, line number): B's code at ``blocks``, A's elsewhere, as ``A__B.png``.

    Every distinct input is encoded once (streamed); then the rows are decoded batch by batch. A row
    whose a or b is missing or unreadable is listed as ``source:LINE: reason``.
    """
    out_dir = Path(out_dir)
    check_output_folder(out_dir)
    index = {p.as_posix(): i for i, p in enumerate(stream.paths)}
    names = stream.names
    check_outputs_free([out_dir / f"{names[index[pa]]}__{names[index[pb]]}.png"
                        for pa, pb, _ in rows if pa in index and pb in index], overwrite)
    codes = torch.zeros(len(stream), model.latent_dim)
    readable = torch.zeros(len(stream), dtype=torch.bool)
    with model.frozen():
        for batch in stream:
            if len(batch):
                codes[batch.indices] = model.encode(batch.float_images(model.device), len(batch), precision).cpu()
                readable[batch.indices] = True
            progress(batch.count)
    bad = {p.as_posix(): reason for p, reason in stream.failures}
    done = Written()
    good: list[tuple[int, int]] = []
    for pa, pb, line in rows:
        missing = [p for p in (pa, pb) if p not in index or not readable[index[p]]]
        if missing:
            first = missing[0]
            reason = bad.get(first, f"{first}: unreadable") if first else "an empty a or b cell"
            done.failures.append((Path(first), f"{source}:{line}: {reason}"))
            continue
        good.append((index[pa], index[pb]))
    targets = [out_dir / f"{names[ia]}__{names[ib]}.png" for ia, ib in good]
    if not good:
        return done
    ia = torch.tensor([g[0] for g in good])
    ib = torch.tensor([g[1] for g in good])
    with BackgroundWriter() as writer, model.frozen():
        for start, chunk in code_batches(ia, stream.batch_size):
            stack = mix_codes(codes[chunk], codes[ib[start:start + len(chunk)]], blocks, model.n_blocks)
            out = model.decode(stack, noise, len(chunk), precision).cpu()
            for k, img in enumerate(out):
                writer.submit(save_image, img, targets[start + k], overwrite)
            done.count += len(out)
            progress(len(out))
    return done
