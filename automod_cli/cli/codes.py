"""Verbs on codes: encode, decode, reconstruct, mix, interpolate, edit, sample (attr: cli/attr.py)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import List, Optional

import torch
import typer

from .. import pipeline
from ..errors import InputError, UserError
from ..io.images import make_grid, save_image, save_pil
from ..model import code_stack, edit_stack, mix_stack, parse_scales, random_codes
from .common import BatchOpt, DeviceOpt, OverwriteOpt, SeedOpt, command_option, finish_batch, resolve_device, say

ModelOpt = typer.Option(None, "--model", "-m", help="Model file or cached model name (default: $AUTOMOD_MODEL, else toy64).")
NoiseOpt = typer.Option(False, "--noise", help="Turn layer noise on (off by default, as the reference advises).")
AlignOpt = typer.Option(False, "--align", help="Align in-the-wild photos the FFHQ way (largest face) first.")


def _setup(model_path: Optional[Path], device: str, seed: int):
    torch.manual_seed(seed)
    model = pipeline.load_model(model_path, resolve_device(device))
    say(f"model: {model.source_path} ({model.resolution}², {model.n_blocks} blocks)")
    pipeline.warn_about_aligned_photos(model, bool(command_option("align")))
    return model


def _read(model, items, align: bool, what: str = "inputs") -> pipeline.Inputs:
    inputs = pipeline.read_inputs(items, model.resolution, align=align)
    pipeline.require_inputs(inputs, what)
    return inputs


def _paste_back(inputs: pipeline.Inputs, outputs: torch.Tensor, out_dir: Path, overwrite: bool) -> None:
    for path, name, crop, sidecar in zip(inputs.paths, inputs.names, outputs, inputs.sidecars):
        photo = pipeline.paste_into_photo(path, crop, sidecar)
        save_pil(photo, out_dir / f"{name}_photo.png", overwrite=overwrite)


def encode(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Path = typer.Option(..., "--output", "-o", help="Latents file to write (.safetensors)."),
    model_path: Optional[Path] = ModelOpt, align: bool = AlignOpt, batch_size: int = BatchOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Encode images to unit-norm codes; the inputs' names are kept with the codes."""
    model = _setup(model_path, device, seed)
    inputs = _read(model, images, align)
    z = model.encode(inputs.images, batch_size)
    pipeline.save_latents(output, z.cpu(), inputs.names, model, overwrite=overwrite)
    say(f"wrote {output} ({len(inputs)} codes of {model.latent_dim})")
    finish_batch(inputs.failures)


def decode(
    latents: Path = typer.Argument(..., help="Latents file written by 'automod encode'."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the decoded images."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, batch_size: int = BatchOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Decode a latents file to one image per code."""
    model = _setup(model_path, device, seed)
    codes, names = pipeline.load_latents(latents, model)
    out = model.decode(codes, noise=noise, batch_size=batch_size)
    for name, img in zip(names, out):
        save_image(img, output / f"{name}.png", overwrite=overwrite)
    say(f"wrote {len(names)} images to {output}")


def reconstruct(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for reconstructions and the comparison grid."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: also paste each result back into its photo."),
    batch_size: int = BatchOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Reconstruct images (decode(encode(x))), with an input | output comparison grid."""
    if paste_back and not align:
        raise UserError("--paste-back needs --align (it pastes into the photo the face was aligned from)")
    model = _setup(model_path, device, seed)
    inputs = _read(model, images, align)
    out = model.reconstruct(inputs.images, noise=noise, batch_size=batch_size).cpu()
    for name, img in zip(inputs.names, out):
        save_image(img, output / f"{name}.png", overwrite=overwrite)
    pairs = torch.stack([inputs.images, out], dim=1).reshape(-1, *out.shape[1:])
    save_image(make_grid(pairs, nrow=min(8, 2 * len(inputs)) // 2 * 2 or 2), output / "comparison.png", overwrite=overwrite)
    if paste_back:
        _paste_back(inputs, out, output, overwrite)
    say(f"wrote {len(inputs)} reconstructions and comparison.png to {output}")
    finish_batch(inputs.failures)


def mix(
    a: Optional[str] = typer.Argument(None, help="Image(s) A (file, folder or glob): drive the scales NOT named."),
    b: Optional[str] = typer.Argument(None, help="Image(s) B (file, folder or glob): drive the named --scales."),
    scales: str = typer.Option(..., "--scales", "-s", help="Scales B drives: 4-8, 16-64, coarse, middle, fine, all, …"),
    output: Path = typer.Option(..., "--output", "-o", help="Output image (a grid for several A/B), or a folder with --pairs."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV with columns a, b: one mix per row, written into -o DIR."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align and one A/B pair: paste the mix back into A's photo."),
    batch_size: int = BatchOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Mix scales: B drives the named scales, A the rest. Several A and B give the A×B matrix."""
    if pairs is None and (a is None or b is None):
        raise UserError("give two inputs A B, or --pairs pairs.csv")
    if paste_back and not align:
        raise UserError("--paste-back needs --align")
    model = _setup(model_path, device, seed)
    blocks = parse_scales(scales, model.n_blocks)
    if pairs is not None:
        _mix_pairs(model, pairs, blocks, output, noise, align, batch_size, overwrite)
        return
    ins_a, ins_b = _read(model, [a], align, "A inputs"), _read(model, [b], align, "B inputs")
    za, zb = model.encode(ins_a.images, batch_size), model.encode(ins_b.images, batch_size)
    cells = pipeline.mix_matrix(model, za, zb, blocks, noise, batch_size).cpu()
    if len(ins_a) == 1 and len(ins_b) == 1:
        save_image(cells[0, 0], output, overwrite=overwrite)
        if paste_back:
            photo = pipeline.paste_into_photo(ins_a.paths[0], cells[0, 0], ins_a.sidecars[0])
            save_pil(photo, output.with_name(output.stem + "_photo.png"), overwrite=overwrite)
    else:
        grid = pipeline.matrix_grid(ins_a.images, ins_b.images, cells)
        save_image(make_grid(grid, nrow=len(ins_b) + 1), output, overwrite=overwrite)
    say(f"wrote {output} ({len(ins_a)}×{len(ins_b)} mix at scales {scales})")
    finish_batch(ins_a.failures + ins_b.failures)


def _mix_pairs(model, pairs_csv: Path, blocks, out_dir: Path, noise, align, batch_size, overwrite) -> None:
    if not pairs_csv.exists():
        raise InputError("no such file", pairs_csv)
    with open(pairs_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"a", "b"} <= set(rows[0].keys()):
        raise InputError("needs a header with columns 'a' and 'b'", pairs_csv)
    # Names are relative to the CSV's folder (an absolute name stays as it is under Path's "/").
    rows = [((pairs_csv.parent / r["a"]).as_posix() if r.get("a") else "",
             (pairs_csv.parent / r["b"]).as_posix() if r.get("b") else "") for r in rows]
    inputs = pipeline.read_inputs(sorted({p for row in rows for p in row if p}), model.resolution, align=align)
    index = {p.as_posix(): i for i, p in enumerate(inputs.paths)}
    bad = {p.as_posix(): reason for p, reason in inputs.failures}
    z = model.encode(inputs.images, batch_size) if len(inputs) else None
    failures, done = [], 0
    for n, (pa, pb) in enumerate(rows, start=2):
        missing = [p for p in (pa, pb) if p not in index]
        if missing:
            reason = bad.get(missing[0], f"{missing[0]}: unreadable") if missing[0] else "an empty a or b cell"
            failures.append((Path(missing[0]), f"{pairs_csv}:{n}: {reason}"))
            continue
        ia, ib = index[pa], index[pb]
        stack = pipeline.mix_codes(z[ia:ia + 1], z[ib:ib + 1], blocks, model.n_blocks)
        img = model.decode(stack, noise=noise)[0]
        save_image(img, out_dir / f"{inputs.names[ia]}__{inputs.names[ib]}.png", overwrite=overwrite)
        done += 1
    say(f"wrote {done} mixes to {out_dir}")
    finish_batch(failures)


def interpolate(
    images: List[str] = typer.Argument(..., help="Two images A B (a strip) or four A B C D (a square: corners TL TR BL BR)."),
    output: Path = typer.Option(..., "--output", "-o", help="Output grid image."),
    steps: int = typer.Option(8, "--steps", help="Images along each side (at least 2)."),
    scales: str = typer.Option("all", "--scales", "-s", help="Interpolate only these scales (others stay at A)."),
    frames: Optional[Path] = typer.Option(None, "--frames", help="Also write every frame into this folder."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    batch_size: int = BatchOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Spherical interpolation between the codes of two (strip) or four (square) images."""
    if steps < 2:
        raise UserError(f"--steps must be at least 2, got {steps}")
    if len(images) not in (2, 4):
        raise UserError(f"interpolate takes 2 or 4 images, got {len(images)}")
    model = _setup(model_path, device, seed)
    blocks = parse_scales(scales, model.n_blocks)
    inputs = pipeline.read_inputs(images, model.resolution, align=align)
    if inputs.failures or len(inputs) != len(images):
        finish_batch(inputs.failures or [(Path(images[0]), "inputs must be exactly 2 or 4 image files")])
    z = model.encode(inputs.images, batch_size).cpu()
    if len(images) == 2:
        stacks = pipeline.interpolation_stacks(z[0:1], z[1:2], steps, blocks, model.n_blocks)
    else:
        stacks = pipeline.interpolation_square(z, steps, blocks, model.n_blocks)
    out = model.decode(stacks, noise=noise, batch_size=batch_size).cpu()
    save_image(make_grid(out, nrow=steps), output, overwrite=overwrite)
    if frames is not None:
        for k, img in enumerate(out):
            save_image(img, frames / f"frame_{k:04d}.png", overwrite=overwrite)
    say(f"wrote {output} ({len(out)} images)")


def edit(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    attr: str = typer.Option(..., "--attr", help="Attribute name (see 'automod attr list')."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the edited images."),
    strength: float = typer.Option(1.0, "--strength", "-k", help="k in z + k·δ (negative removes the attribute)."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="Scales to edit (default: the attribute's own, else all)."),
    attr_file: Optional[Path] = typer.Option(None, "--attr-file", help="Attribute file written by 'attr add --out'."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: paste each edit back into its photo."),
    batch_size: int = BatchOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Add k·δ of a learned attribute direction to each image's code, at chosen scales."""
    if paste_back and not align:
        raise UserError("--paste-back needs --align")
    model = _setup(model_path, device, seed)
    if attr_file is not None:
        pipeline.load_attributes(attr_file, model)
    attribute = model.attribute(attr)
    blocks = parse_scales(scales or attribute.scales or "all", model.n_blocks)
    inputs = _read(model, images, align)
    z = model.encode(inputs.images, batch_size).cpu()
    stacks = edit_stack(code_stack(z, model.n_blocks), attribute.delta, strength, blocks)
    out = model.decode(stacks, noise=noise, batch_size=batch_size).cpu()
    for name, img in zip(inputs.names, out):
        save_image(img, output / f"{name}_{attr}.png", overwrite=overwrite)
    if paste_back:
        _paste_back(inputs, out, output, overwrite)
    say(f"wrote {len(out)} edits ({attr}, k={strength}) to {output}")
    finish_batch(inputs.failures)


def sample(
    n: int = typer.Option(16, "--n", min=1, help="Number of samples."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder: one PNG per sample plus grid.png."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Conditional sampling: keep this image's code at --scales."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="With --keep: the scales fixed to the image."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    batch_size: int = BatchOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Random samples (codes normalize(N(0, I))); with --keep, conditional samples."""
    if (keep is None) != (scales is None):
        raise UserError("--keep and --scales go together (the scales fixed to the kept image's code)")
    model = _setup(model_path, device, seed)
    gen = torch.Generator().manual_seed(seed)
    z = random_codes(n, model.latent_dim, gen)
    stacks = code_stack(z, model.n_blocks)
    first = None
    if keep is not None:
        blocks = parse_scales(scales, model.n_blocks)
        inputs = pipeline.read_inputs([keep], model.resolution, align=align)
        if len(inputs) != 1:
            finish_batch(inputs.failures or [(Path(keep), f"{keep}: --keep takes exactly one image")])
        zk = model.encode(inputs.images).cpu()
        stacks = mix_stack(stacks, zk.expand(n, -1), blocks)
        first = inputs.images
    out = model.decode(stacks, noise=noise, batch_size=batch_size).cpu()
    for k, img in enumerate(out):
        save_image(img, output / f"sample_{k:04d}.png", overwrite=overwrite)
    grid = out if first is None else torch.cat([first, out])
    save_image(make_grid(grid, nrow=min(8, len(grid))), output / "grid.png", overwrite=overwrite)
    say(f"wrote {n} samples and grid.png to {output}" + (f" (kept {keep} at scales {scales})" if keep else ""))


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
    app.command("decode")(decode)
    app.command("reconstruct")(reconstruct)
    app.command("mix")(mix)
    app.command("interpolate")(interpolate)
    app.command("edit")(edit)
    app.command("sample")(sample)
