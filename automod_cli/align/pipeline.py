"""Photos in, FFHQ-aligned faces out: ``align_faces`` for one image, ``align_files`` for many.

``align_files`` runs photos in a pool of worker processes (each loads the ~100 MB landmark model
once) and yields one ``PhotoResult`` per photo as it finishes, so a caller can show progress.
"""

from __future__ import annotations

import json
import multiprocessing
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image

from ..errors import InputError, UserError
from ..io.atomic import atomic_path, write_text_atomic
from ..io.images import MAX_PIXELS, open_image, to_rgb, unique_names
from .ffhq import AlignGeometry, fast_transform_size, ffhq_geometry, render_aligned
from .landmarks import Detection, landmark_model_path, shared_detector

SIDECAR_FORMAT = "automod-align/1"
FACE_CHOICES = ("largest", "all")


@dataclass
class AlignedFace:
    """One aligned face: the crop (PIL RGB, size x size) and its JSON-able sidecar dict."""

    image: Image.Image
    sidecar: dict


@dataclass
class AlignTimings:
    """Seconds spent in each stage (accumulated; used by the benchmark)."""

    detect: float = 0.0
    landmarks: float = 0.0
    transform: float = 0.0


def _as_rgb(path_or_pil: str | Path | Image.Image) -> tuple[Image.Image, str | None]:
    if isinstance(path_or_pil, Image.Image):
        w, h = path_or_pil.size
        if w * h > MAX_PIXELS:
            raise InputError(f"image too large (refused above {MAX_PIXELS} pixels)")
        return to_rgb(path_or_pil), None
    return open_image(path_or_pil), str(path_or_pil)


def _sidecar(source: str | None, img: Image.Image, det: Detection, g: AlignGeometry, upsample: int,
             index: int, count: int) -> dict:
    def pts(a: np.ndarray) -> list[list[float]]:
        return [[round(float(x), 4), round(float(y), 4)] for x, y in a]

    return {
        "format": SIDECAR_FORMAT,
        "source": source,
        "source_size": [img.size[0], img.size[1]],
        "index": index,
        "faces_found": count,
        "detector": {"score": round(det.score, 6), "box": list(det.box), "upsample": int(upsample)},
        "landmarks": pts(det.landmarks),
        "quad": pts(g.quad),
        "sampled_quad": pts(g.sampled_quad),
        "qsize": round(g.qsize, 4),
        "output_size": g.output_size,
        "transform_size": g.transform_size,
        "shrink": g.shrink,
        "crop": None if g.crop is None else list(g.crop),
        "pad": None if g.pad is None else list(g.pad),
    }


def align_faces(path_or_pil: str | Path | Image.Image, size: int, *, faces: str = "largest",
                transform_size: int = 4096, upsample: int = 1, min_score: float = 0.0,
                fast: bool = False, timings: AlignTimings | None = None) -> list[AlignedFace]:
    """Detect faces and align them the FFHQ way, largest first.

    ``faces="largest"`` returns one face, ``"all"`` every face with score >= ``min_score``, ordered
    by the size of their FFHQ quad (index 1 = largest). ``upsample`` doubles the image that many
    times for the detector (dlib misses faces under ~80 px otherwise). ``fast=True`` supersamples
    less than ``transform_size`` where that gives nearly the same pixels. Raises ``InputError`` when the image
    cannot be read or no face is found.
    """
    if faces not in FACE_CHOICES:
        raise ValueError(f"faces must be one of {FACE_CHOICES}, got {faces!r}")
    if size < 1 or transform_size < 1:
        raise ValueError("size and transform_size must be positive")
    img, source = _as_rgb(path_or_pil)
    detector_pixels = img.size[0] * img.size[1] * 4 ** int(upsample)
    if detector_pixels > MAX_PIXELS:
        # dlib would build an image of this many pixels (and its HOG pyramid) in memory.
        raise InputError(f"{img.size[0]}x{img.size[1]} upsampled {upsample} time(s) for the detector exceeds "
                         f"{MAX_PIXELS} pixels; use a lower --upsample", source)
    rgb = np.asarray(img, dtype=np.uint8)
    detector = shared_detector()

    t0 = time.perf_counter()
    boxes = detector.detect(rgb, upsample, min_score)
    t1 = time.perf_counter()
    detections = [Detection(box, score, detector.landmarks(rgb, box)) for box, score in boxes]
    t2 = time.perf_counter()
    if timings is not None:
        timings.detect += t1 - t0
        timings.landmarks += t2 - t1
    if not detections:
        hint = "" if upsample >= 2 else f"; small faces may need --upsample {upsample + 1}"
        raise InputError(f"no face found (detector upsample {upsample}, min score {min_score:g}{hint})", source)

    geometries = [ffhq_geometry(d.landmarks, img.size, size, transform_size) for d in detections]
    order = sorted(range(len(detections)), key=lambda k: -geometries[k].qsize)
    if faces == "largest":
        order = order[:1]
    out = []
    for index, k in enumerate(order, start=1):
        t3 = time.perf_counter()
        crop = render_aligned(img, geometries[k], fast=fast)
        if timings is not None:
            timings.transform += time.perf_counter() - t3
        sidecar = _sidecar(source, img, detections[k], geometries[k], upsample, index, len(detections))
        sidecar["transform_used"] = fast_transform_size(geometries[k]) if fast else geometries[k].transform_size
        out.append(AlignedFace(crop, sidecar))
    return out


# ---------------------------------------------------------------------------------------------
# Many files.

@dataclass
class AlignOptions:
    size: int = 256
    faces: str = "largest"
    transform_size: int = 4096
    upsample: int = 1
    min_score: float = 0.0
    fast: bool = False
    overwrite: bool = False


@dataclass
class PhotoResult:
    """What happened to one photo: files written, or the reason it was skipped."""

    path: Path
    outputs: list[Path] = field(default_factory=list)
    error: str | None = None


def output_names(stem: str, count: int, faces: str) -> list[str]:
    """``name`` for the largest face; ``name_01``, ``name_02``... with ``faces="all"``."""
    if faces == "largest":
        return [stem]
    return [f"{stem}_{k:02d}" for k in range(1, count + 1)]


def sidecar_json(sidecar: dict) -> str:
    """One key per line, each value on one line (68 landmark pairs stay readable)."""
    lines = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in sidecar.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"


def align_file(path: Path, out_dir: Path, stem: str, opts: AlignOptions) -> PhotoResult:
    """Align one photo and write ``stem*.png`` + ``stem*.json``; errors become ``PhotoResult.error``."""
    result = PhotoResult(Path(path))
    try:
        found = align_faces(path, opts.size, faces=opts.faces, transform_size=opts.transform_size,
                            upsample=opts.upsample, min_score=opts.min_score, fast=opts.fast)
        names = output_names(stem, len(found), opts.faces)
        targets = [(out_dir / f"{n}.png", out_dir / f"{n}.json") for n in names]
        if not opts.overwrite:
            for pair in targets:
                for t in pair:
                    if t.exists():
                        raise UserError("exists already (use --overwrite to replace it)", t)
        for face, (png, js) in zip(found, targets):
            with atomic_path(png, overwrite=opts.overwrite) as tmp:
                face.image.save(tmp, format="PNG")
            write_text_atomic(js, sidecar_json(face.sidecar), overwrite=opts.overwrite)
            result.outputs += [png, js]
    except UserError as e:
        result.error = str(e) if str(path) in str(e) else f"{path}: {e}"
    except (OSError, ValueError, MemoryError) as e:
        result.error = f"{path}: {type(e).__name__}: {e}"
    return result


def _worker_init() -> None:
    # Each worker process loads the detector once, up front.
    try:
        shared_detector()
    except UserError:
        pass  # reported per photo by align_file


def _pool_context():
    # On Linux, fork: workers inherit the imported modules (torch takes seconds to import). The pool
    # forks all its workers at the first submit, before it starts any thread of its own; callers
    # showing progress should not run threads of their own meanwhile (rich: auto_refresh=False).
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def align_files(paths: Sequence[Path], out_dir: str | Path, opts: AlignOptions,
                workers: int = 1) -> Iterator[PhotoResult]:
    """Align many photos; yields one ``PhotoResult`` per photo, in completion order."""
    out_dir = Path(out_dir)
    paths = [Path(p) for p in paths]
    landmark_model_path()  # a missing model is one error for the whole run, not one per photo
    stems = unique_names(paths)
    workers = max(1, min(int(workers), len(paths)))
    if workers == 1:
        for p, s in zip(paths, stems):
            yield align_file(p, out_dir, s, opts)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context(), initializer=_worker_init) as pool:
        submitted = {pool.submit(align_file, p, out_dir, s, opts): p for p, s in zip(paths, stems)}
        pending = set(submitted)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                try:
                    yield fut.result()
                except Exception as e:  # a worker died (out of memory, crash in dlib): skip, go on
                    yield PhotoResult(submitted[fut], error=f"{submitted[fut]}: worker failed: {type(e).__name__}: {e}")
