"""``automod align`` (FFHQ face alignment) and ``automod paste`` (edited crop back into the photo)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

from ..errors import InputError, UserError
from ..io.images import MAX_PIXELS, cpu_workers, expand_inputs, open_image, save_pil
from .common import OverwriteOpt, finish_batch, plural, say


ALL_FACES_MIN_SCORE = 0.5  # what the help promises: real faces score above it, dlib's false hits below


def register(app: typer.Typer) -> None:
    app.command("align")(align_command)
    app.command("paste")(paste_command)


def align_command(
    inputs: List[str] = typer.Argument(..., help="Photos, folders (recursive) or glob patterns."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="Folder for the aligned faces and their .json sidecars."),
    size: int = typer.Option(256, "--size", min=8, max=4096, help="Output size in pixels (256, 512 or 1024 for the released models)."),
    faces: str = typer.Option("largest", "--faces", help="largest: one face per photo (name.png); all: every face, largest first (name_01.png, name_02.png...)."),
    transform_size: int = typer.Option(4096, "--transform-size", min=8, max=8192, help="Supersampling size of the quad transform (4096 as FFHQ; smaller is faster and slightly different)."),
    upsample: int = typer.Option(1, "--upsample", min=0, max=4, help="Times the detector doubles the photo (faces below ~80 px need 1 or 2; slower)."),
    min_score: Optional[float] = typer.Option(None, "--min-score", help="Drop detections scoring below this. Default: 0.5 with --faces all (real faces usually score above 0.5; dlib's HOG detector also fires on non-faces, around 0.1), none with --faces largest (a photo given is taken to hold a face)."),
    fast: bool = typer.Option(False, "--fast", help="Supersample only as much as the face needs (>= 3 samples per photo pixel, >= 2x the output): up to ~50x less work, PSNR > 40 dB against --transform-size (see benchmarks/bench_align.py)."),
    workers: int = typer.Option(0, "--workers", "-j", min=0, help="Worker processes (0 = one per CPU core)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Crop and align faces the way FFHQ was made (dlib 68 landmarks, 4096 supersampled quad transform).

    Photos without a face are listed as skipped (exit status 1); the others are still written.
    EXIF-rotated photos are aligned as displayed. Photos above {max_pixels} pixels are refused.
    """
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from ..align import AlignOptions, align_files

    if faces not in ("largest", "all"):
        raise typer.BadParameter("use 'largest' or 'all'", param_hint="--faces")
    paths = expand_inputs(inputs)
    if not paths:
        raise UserError("no input images found")
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("is a file, not a folder", out_dir)
    if min_score is None:
        min_score = ALL_FACES_MIN_SCORE if faces == "all" else 0.0
    opts = AlignOptions(size=size, faces=faces, transform_size=transform_size, upsample=upsample,
                        min_score=min_score, fast=fast, overwrite=overwrite)
    n_workers = workers or cpu_workers()

    failures: list[tuple[Path, str]] = []
    n_faces = 0
    columns = (TextColumn("aligning"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    # No refresh thread: the worker pool forks, and forking beside a running thread is unsafe.
    with Progress(*columns, console=Console(stderr=True), transient=True, auto_refresh=False) as progress:
        task = progress.add_task("align", total=len(paths))
        for result in align_files(paths, out_dir, opts, workers=n_workers):
            if result.error is not None:
                failures.append((result.path, result.error))
            else:
                n_faces += len(result.outputs) // 2
            progress.advance(task)
            progress.refresh()
    say(f"aligned {plural(n_faces, 'face')} from {len(paths) - len(failures)} of {plural(len(paths), 'photo')} "
        f"into {out_dir}")
    finish_batch(failures, "photo")


align_command.__doc__ = align_command.__doc__.format(max_pixels=MAX_PIXELS)


def read_sidecar(path: Path) -> dict:
    """Load and check an alignment sidecar written by ``automod align``."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"not an alignment sidecar (unreadable JSON: {e})", path) from None
    if not isinstance(data, dict):
        raise InputError("not an alignment sidecar (expected a JSON object)", path)
    missing = [k for k in ("source_size", "quad", "landmarks") if k not in data]
    if missing:
        raise InputError(f"not an alignment sidecar (missing {', '.join(missing)})", path)
    try:
        ok = len(data["quad"]) == 4 and len(data["landmarks"]) == 68 and len(data["source_size"]) == 2
    except TypeError:
        ok = False
    if not ok:
        raise InputError("not an alignment sidecar (quad, landmarks or source_size malformed)", path)
    return data


def paste_command(
    aligned: Path = typer.Argument(..., help="The (edited) aligned face, any square size."),
    into: Path = typer.Option(..., "--into", help="The original photo the face was aligned from."),
    sidecar: Path = typer.Option(..., "--sidecar", help="The .json sidecar 'automod align' wrote for this face."),
    out: Path = typer.Option(..., "--out", "-o", help="Output image (PNG keeps the untouched pixels exact; JPEG re-encodes them)."),
    feather: float = typer.Option(0.06, "--feather", min=0.0, max=0.5, help="Width of the mask's soft edge, as a fraction of the crop."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Warp an aligned face back into its photo, at the photo's resolution.

    Only a feathered mask over the face changes; every other pixel keeps its value.
    """
    from ..align import paste_back

    meta = read_sidecar(sidecar)
    photo = open_image(into)
    crop = open_image(aligned)
    if crop.size[0] != crop.size[1]:
        raise InputError(f"the aligned face must be square, got {crop.size[0]}x{crop.size[1]}", aligned)
    expected = tuple(int(v) for v in meta["source_size"])
    if photo.size != expected:
        raise InputError(f"is {photo.size[0]}x{photo.size[1]}, but the sidecar {sidecar} was made from a "
                         f"{expected[0]}x{expected[1]} photo", into)
    if out.exists() and not overwrite:
        raise UserError("exists already (use --overwrite to replace it)", out)
    result = paste_back(photo, crop, meta, feather=feather)
    save_pil(result, out, overwrite=overwrite)
    say(f"wrote {out}")
