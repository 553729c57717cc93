"""Verbs on codes: encode, decode, reconstruct, mix, interpolate, edit, sample (attr: cli/attr.py).

The data-set-scale verbs stream (see ``automod_cli/streaming.py``): inputs are read ahead by worker
processes, outputs are written as each batch finishes, and a progress bar shows on big runs.
"""

from __future__ import annotations

import contextlib
import csv
from pathlib import Path
from typing import List, Optional

import torch
import typer

from .. import pipeline
from ..devices import bf16_warning
from ..errors import InputError, UserError
from ..io import latents as latents_io
from ..io.images import expand_inputs, make_grid, save_image, save_pil
from ..io.video import VideoWriter, check_video_path
from ..model import code_stack, mix_stack, parse_scales, parse_seeds, random_codes, seed_codes
from ..streaming import ImageStream, keep_freed_memory
from .common import (BatchOpt, DeviceOpt, GridOpt, OverwriteOpt, PrecisionOpt, ProgressOpt, SeedOpt, WorkersOpt,
                     check_precision, command_option, finish_batch, plural, resolve_device, say)
from .progress import VerbProgress

ModelOpt = typer.Option(None, "--model", "-m", help="Model file or cached model name (default: $AUTOMOD_MODEL, else toy64).")
NoiseOpt = typer.Option(False, "--noise", help="Turn layer noise on (off by default, as the reference advises).")
AlignOpt = typer.Option(False, "--align", help="Align in-the-wild photos the FFHQ way (largest face) first.")


def _setup(model_path: Optional[Path], device: str, seed: int, precision: str = "fp32"):
    check_precision(precision)
    keep_freed_memory()  # batch after batch of the same sizes: no page faults for memory just freed
    torch.manual_seed(seed)
    model = pipeline.load_model(model_path, resolve_device(device))
    say(f"model: {model.source_path} ({model.resolution}², {model.n_blocks} blocks)")
    if precision == "bf16" and (slow_bf16 := bf16_warning(model.device)):
        say(slow_bf16)
    pipeline.warn_about_aligned_photos(model, bool(command_option("align")))
    return model


def _read(model, items, align: bool, what: str = "inputs") -> pipeline.Inputs:
    """A small set of inputs, all in memory (mix matrices, attribute examples, --keep)."""
    inputs = pipeline.read_inputs(items, model.resolution, align=align)
    pipeline.require_inputs(inputs, what)
    return inputs


def _stream(model, items, align: bool, batch_size: int, workers: Optional[int]) -> ImageStream:
    paths = expand_inputs(items)
    if not paths:
        raise UserError("no input images found")
    return ImageStream(paths, model.resolution, batch_size=batch_size, workers=workers, device=model.device,
                       align=align)


def _finish(stream: ImageStream, done_count: int, extra_failures=()) -> None:
    """Crop/resize summary, then: nothing usable is an error (exit 2); some skipped inputs exit 1."""
    stream.warn_fits()
    failures = list(stream.failures) + list(extra_failures)
    if done_count == 0 and failures:
        say(f"automod: {plural(len(failures), 'input')} skipped:")
        for _path, reason in failures:
            say(f"  {reason}")
        raise UserError(f"none of the inputs could be used; first: {failures[0][1]}")
    finish_batch(failures)


def encode(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: str = typer.Option(..., "--output", "-o", help="Latents file to write: .safetensors (codes, names and the "
                               "model's hash), .npz (arrays codes and names) or .npy (codes; names in NAME.names.txt)."),
    model_path: Optional[Path] = ModelOpt, align: bool = AlignOpt, batch_size: int = BatchOpt,
    workers: Optional[int] = WorkersOpt, precision: str = PrecisionOpt, progress: Optional[bool] = ProgressOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Encode images to unit-norm codes; the inputs' names are kept with the codes."""
    path = latents_io.check_latents_path(output, overwrite)
    model = _setup(model_path, device, seed, precision)
    stream = _stream(model, images, align, batch_size, workers)
    with VerbProgress("encode", len(stream), progress) as bar:
        codes, names = pipeline.encode_stream(model, stream, precision, bar.advance)
    if names:
        written = latents_io.save_latents(path, codes, names, pipeline.model_record(model), overwrite=overwrite)
        say(f"wrote {' and '.join(map(str, written))} ({plural(len(names), 'code')} of {model.latent_dim}; "
            f"{bar.summary()})")
    _finish(stream, len(names))


def decode(
    latents: Path = typer.Argument(..., help="Latents file written by 'automod encode' (.safetensors, .npz, .npy)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the decoded images (created if needed)."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, batch_size: int = BatchOpt,
    precision: str = PrecisionOpt, progress: Optional[bool] = ProgressOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Decode a latents file to one image per code."""
    model = _setup(model_path, device, seed, precision)
    codes, names = pipeline.load_latents(latents, model)
    with VerbProgress("decode", len(names), progress) as bar:
        done = pipeline.decode_to_folder(model, codes, names, output, batch_size=batch_size, noise=noise,
                                         precision=precision, overwrite=overwrite, grid=False, progress=bar.advance)
    say(f"wrote {plural(done.count, 'image')} to {output} ({bar.summary()})")


def reconstruct(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for reconstructions and the comparison grid "
                                "(created if needed)."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: also paste each result back into its photo."),
    grid: Optional[bool] = GridOpt, batch_size: int = BatchOpt, workers: Optional[int] = WorkersOpt,
    precision: str = PrecisionOpt, progress: Optional[bool] = ProgressOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Reconstruct images (decode(encode(x))), with an input | output comparison grid for small sets."""
    if paste_back and not align:
        raise UserError("--paste-back needs --align (it pastes into the photo the face was aligned from)")
    model = _setup(model_path, device, seed, precision)
    stream = _stream(model, images, align, batch_size, workers)
    with VerbProgress("reconstruct", len(stream), progress) as bar:
        done = pipeline.reconstruct_to_folder(model, stream, output, noise=noise, precision=precision,
                                              overwrite=overwrite, grid=grid, paste_back=paste_back,
                                              progress=bar.advance)
    if done.count:
        also = f" and {done.grid.name}" if done.grid else ""
        say(f"wrote {plural(done.count, 'reconstruction')}{also} to {output} ({bar.summary()})")
    _finish(stream, done.count)


def _mix_side(model, items: Optional[str], seeds: Optional[str], align: bool, what: str):
    """Codes [K, D] and header images [K, 3, R, R] of one side of a mix, from images or from seeds."""
    if seeds is not None:
        z = seed_codes(parse_seeds(seeds), model.latent_dim)
        return z.to(model.device), None, []
    inputs = _read(model, [items], align, what)
    return None, inputs, inputs.failures


def mix(
    a: Optional[str] = typer.Argument(None, help="Image(s) A (file, folder or glob): drive the scales NOT named."),
    b: Optional[str] = typer.Argument(None, help="Image(s) B (file, folder or glob): drive the named --scales."),
    scales: str = typer.Option(..., "--scales", "-s", help="Scales B drives: 4-8, 16-64, coarse, middle, fine, all, …"),
    output: Path = typer.Option(..., "--output", "-o", help="Output image (a grid for several A/B), or a folder with --pairs."),
    pairs: Optional[Path] = typer.Option(None, "--pairs", help="CSV with columns a, b: one mix per row, written into -o DIR."),
    row_seeds: Optional[str] = typer.Option(None, "--row-seeds", help="A codes from seeds instead of images (e.g. 0-5 or 1,7,9): the rows."),
    col_seeds: Optional[str] = typer.Option(None, "--col-seeds", help="B codes from seeds instead of images: the columns."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align and one A/B pair: paste the mix back into A's photo."),
    batch_size: int = BatchOpt, workers: Optional[int] = WorkersOpt, precision: str = PrecisionOpt,
    progress: Optional[bool] = ProgressOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Mix scales: B drives the named scales, A the rest. Several A and B (images or seeds) give the A×B matrix."""
    if pairs is not None and (row_seeds or col_seeds or a or b):
        raise UserError("--pairs takes its images from the CSV: give no A/B images and no --row-seeds/--col-seeds")
    if row_seeds is not None and a is not None and b is None:
        a, b = None, a  # 'mix --row-seeds 0-3 B.png': the one image is B
    if pairs is None and (a is None) == (row_seeds is None) or pairs is None and (b is None) == (col_seeds is None):
        raise UserError("give A (images or --row-seeds) and B (images or --col-seeds), or --pairs pairs.csv")
    if paste_back and not align:
        raise UserError("--paste-back needs --align")
    model = _setup(model_path, device, seed, precision)
    blocks = parse_scales(scales, model.n_blocks)
    if pairs is not None:
        _mix_pairs(model, pairs, blocks, output, noise, align, batch_size, workers, precision, progress, overwrite)
        return
    if output.exists() and not overwrite:
        raise UserError("exists already (use --overwrite to replace it)", output)
    za, ins_a, fail_a = _mix_side(model, a, row_seeds, align, "A inputs")
    zb, ins_b, fail_b = _mix_side(model, b, col_seeds, align, "B inputs")
    if za is None:
        za = model.encode(ins_a.images, batch_size, precision)
    if zb is None:
        zb = model.encode(ins_b.images, batch_size, precision)
    cells = pipeline.mix_matrix(model, za, zb, blocks, noise, batch_size, precision).cpu()
    if len(za) == 1 and len(zb) == 1:
        save_image(cells[0, 0], output, overwrite=overwrite)
        if paste_back and ins_a is not None:
            photo = pipeline.paste_into_photo(ins_a.paths[0], cells[0, 0], ins_a.sidecars[0])
            save_pil(photo, output.with_name(output.stem + "_photo.png"), overwrite=overwrite)
    else:
        head_a = ins_a.images if ins_a is not None else model.decode(za, noise, batch_size, precision).cpu()
        head_b = ins_b.images if ins_b is not None else model.decode(zb, noise, batch_size, precision).cpu()
        grid = pipeline.matrix_grid(head_a, head_b, cells)
        save_image(make_grid(grid, nrow=len(zb) + 1), output, overwrite=overwrite)
    say(f"wrote {output} ({len(za)}×{len(zb)} mix at scales {scales})")
    finish_batch(fail_a + fail_b)


def _mix_pairs(model, pairs_csv: Path, blocks, out_dir: Path, noise, align, batch_size, workers, precision,
               progress, overwrite) -> None:
    if not pairs_csv.exists():
        raise InputError("no such file", pairs_csv)
    with open(pairs_csv, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or not {"a", "b"} <= set(rows[0].keys()):
        raise InputError("needs a header with columns 'a' and 'b'", pairs_csv)
    # Names are relative to the CSV's folder (an absolute name stays as it is under Path's "/").
    rows = [((pairs_csv.parent / r["a"]).as_posix() if r.get("a") else "",
             (pairs_csv.parent / r["b"]).as_posix() if r.get("b") else "", line)
            for line, r in enumerate(rows, start=2)]
    paths = [Path(p) for p in sorted({p for row in rows for p in row[:2] if p})]
    stream = ImageStream(paths, model.resolution, batch_size=batch_size, workers=workers, device=model.device,
                         align=align)
    with VerbProgress("mix", len(stream) + len(rows), progress) as bar:
        done = pipeline.mix_pairs_to_folder(model, rows, stream, blocks, out_dir, source=str(pairs_csv), noise=noise,
                                            precision=precision, overwrite=overwrite, progress=bar.advance)
    say(f"wrote {plural(done.count, 'mix', 'mixes')} to {out_dir} ({bar.summary()})")
    stream.warn_fits()
    finish_batch(done.failures)


def interpolate(
    images: List[str] = typer.Argument(..., help="Two images A B (a strip) or four A B C D (a square: corners TL TR BL BR)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output grid image."),
    steps: int = typer.Option(8, "--steps", help="Images along each side (at least 2)."),
    scales: str = typer.Option("all", "--scales", "-s", help="Interpolate only these scales (others stay at A)."),
    frames: Optional[Path] = typer.Option(None, "--frames", help="Also write every frame into this folder."),
    video: Optional[Path] = typer.Option(None, "--video", help="Also write the frames as an animation: .gif or .webp "
                                         "(Pillow), .mp4 (needs the extra: pip install 'automod-cli[video]')."),
    fps: float = typer.Option(24.0, "--fps", min=0.1, help="Frames per second of --video."),
    loop: bool = typer.Option(True, "--loop/--no-loop", help="GIF/WebP: play forever or once (MP4 plays once)."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    batch_size: int = BatchOpt, precision: str = PrecisionOpt, progress: Optional[bool] = ProgressOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Spherical interpolation between the codes of two (strip) or four (square) images."""
    if steps < 2:
        raise UserError(f"--steps must be at least 2, got {steps}")
    if len(images) not in (2, 4):
        raise UserError(f"interpolate takes 2 or 4 images, got {len(images)}")
    if output is None and frames is None and video is None:
        raise UserError("give -o GRID.png, --frames FOLDER or --video FILE (or several)")
    if video is not None:
        check_video_path(video, overwrite)
    model = _setup(model_path, device, seed, precision)
    blocks = parse_scales(scales, model.n_blocks)
    inputs = pipeline.read_inputs(images, model.resolution, align=align)
    if inputs.failures or len(inputs) != len(images):
        finish_batch(inputs.failures or [(Path(images[0]), "inputs must be exactly 2 or 4 image files")])
    z = model.encode(inputs.images, batch_size, precision).cpu()
    if len(images) == 2:
        stacks = pipeline.interpolation_stacks(z[0:1], z[1:2], steps, blocks, model.n_blocks)
    else:
        stacks = pipeline.interpolation_square(z, steps, blocks, model.n_blocks)
    writer = VideoWriter(video, fps=fps, loop=loop, overwrite=overwrite) if video is not None else None
    with VerbProgress("interpolate", len(stacks), progress, unit="frames") as bar, \
            writer if writer is not None else contextlib.nullcontext():
        pipeline.render_frames(model, stacks, nrow=steps, grid_path=output, frames_dir=frames, video=writer,
                               batch_size=batch_size, noise=noise, precision=precision, overwrite=overwrite,
                               progress=bar.advance)
    written = [str(p) for p in (output, frames, video) if p is not None]
    say(f"wrote {', '.join(written)} ({bar.summary()})")


def edit(
    images: List[str] = typer.Argument(..., help="Image files, folders or globs."),
    attr: str = typer.Option(..., "--attr", help="Attribute name (see 'automod attr list')."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder for the edited images (created if needed)."),
    strength: float = typer.Option(1.0, "--strength", "-k", help="k in z + k·δ (negative removes the attribute)."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="Scales to edit (default: the attribute's own, else all)."),
    attr_file: Optional[Path] = typer.Option(None, "--attr-file", help="Attribute file written by 'attr add --out'."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt,
    paste_back: bool = typer.Option(False, "--paste-back", help="With --align: paste each edit back into its photo."),
    batch_size: int = BatchOpt, workers: Optional[int] = WorkersOpt, precision: str = PrecisionOpt,
    progress: Optional[bool] = ProgressOpt, device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Add k·δ of a learned attribute direction to each image's code, at chosen scales."""
    if paste_back and not align:
        raise UserError("--paste-back needs --align")
    model = _setup(model_path, device, seed, precision)
    if attr_file is not None:
        pipeline.load_attributes(attr_file, model)
    attribute = model.attribute(attr)
    blocks = parse_scales(scales or attribute.scales or "all", model.n_blocks)
    stream = _stream(model, images, align, batch_size, workers)
    with VerbProgress("edit", len(stream), progress) as bar:
        done = pipeline.edit_to_folder(model, stream, attr, strength, blocks, output, noise=noise,
                                       precision=precision, overwrite=overwrite, paste_back=paste_back,
                                       progress=bar.advance)
    if done.count:
        say(f"wrote {plural(done.count, 'edit')} ({attr}, k={strength}) to {output} ({bar.summary()})")
    _finish(stream, done.count)


def sample(
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Number of samples (default 16), drawn from --seed: "
                                    "sample_0000.png, …"),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="One sample per seed instead, e.g. 0-35 or 1,5,9: "
                                        "seed0001.png, …; seed k always gives the same image."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder: one PNG per sample plus grid.png (created if needed)."),
    keep: Optional[str] = typer.Option(None, "--keep", help="Conditional sampling: keep this image's code at --scales."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="With --keep: the scales fixed to the image."),
    model_path: Optional[Path] = ModelOpt, noise: bool = NoiseOpt, align: bool = AlignOpt, grid: Optional[bool] = GridOpt,
    batch_size: int = BatchOpt, precision: str = PrecisionOpt, progress: Optional[bool] = ProgressOpt,
    device: str = DeviceOpt, seed: int = SeedOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Random samples (codes normalize(N(0, I))); with --keep, conditional samples."""
    if (keep is None) != (scales is None):
        raise UserError("--keep and --scales go together (the scales fixed to the kept image's code)")
    if n is not None and seeds is not None:
        raise UserError("give --n (samples drawn from --seed) or --seeds (one sample per seed), not both")
    model = _setup(model_path, device, seed, precision)
    seed_list = parse_seeds(seeds) if seeds is not None else None
    if seed_list is not None:
        z = seed_codes(seed_list, model.latent_dim)
        names = [f"seed{k:04d}" for k in seed_list]
    else:
        count = 16 if n is None else n
        z = random_codes(count, model.latent_dim, torch.Generator().manual_seed(seed))
        names = [f"sample_{k:04d}" for k in range(count)]
    stacks = code_stack(z, model.n_blocks)
    first = None
    if keep is not None:
        blocks = parse_scales(scales, model.n_blocks)
        inputs = pipeline.read_inputs([keep], model.resolution, align=align)
        if len(inputs) != 1:
            finish_batch(inputs.failures or [(Path(keep), f"{keep}: --keep takes exactly one image")])
        zk = model.encode(inputs.images, precision=precision).cpu()
        stacks = mix_stack(stacks, zk.expand(len(z), -1), blocks)
        first = inputs.images
    with VerbProgress("sample", len(names), progress) as bar:
        done = pipeline.decode_to_folder(model, stacks, names, output, batch_size=batch_size, noise=noise,
                                         precision=precision, overwrite=overwrite, grid=grid, grid_first=first,
                                         seeds=seed_list, progress=bar.advance)
    also = f" and {done.grid.name}" if done.grid else ""
    say(f"wrote {plural(done.count, 'sample')}{also} to {output} ({bar.summary()})"
        + (f" (kept {keep} at scales {scales})" if keep else ""))


def register(app: typer.Typer) -> None:
    app.command("encode")(encode)
    app.command("decode")(decode)
    app.command("reconstruct")(reconstruct)
    app.command("mix")(mix)
    app.command("interpolate")(interpolate)
    app.command("edit")(edit)
    app.command("sample")(sample)
