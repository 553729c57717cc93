"""Benchmark `automod align`: faces/s with 1 and all workers, time per stage, fast vs plain transform.

    .venv/bin/python benchmarks/bench_align.py [--photos 8] [--sizes 256 1024] [--transform-size 4096]

The photo folder is made from scikit-image's astronaut (the only offline face photo): copies at
512, 1024 and 2048 px, mirrored, rotated and shifted, saved as PNG in a temporary folder.
The fast path (`--fast`) is compared with the plain one by PSNR on those photos and, as a worst case
for resampling, on white noise warped with the astronaut's geometry.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_model  # noqa: E402
from automod_cli.align.ffhq import fast_transform_size, ffhq_geometry, render_aligned  # noqa: E402
from automod_cli.align.landmarks import shared_detector  # noqa: E402
from automod_cli.align.pipeline import AlignOptions, AlignTimings, align_faces, align_files  # noqa: E402


def make_photos(folder: Path, count: int) -> list[Path]:
    from skimage import data

    base = Image.fromarray(data.astronaut())
    paths = []
    for k in range(count):
        side = (512, 1024, 2048)[k % 3]
        im = base.resize((side, side), Image.LANCZOS)
        if k % 2:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        angle = (-15, 0, 10, 5)[k % 4]
        im = im.rotate(angle, resample=Image.BICUBIC, translate=(side * 0.02 * (k % 3), 0), fillcolor=(120, 120, 120))
        path = folder / f"photo_{k:02d}.png"
        im.save(path)
        paths.append(path)
    return paths


def psnr(a, b) -> float:
    d = np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)
    mse = (d ** 2).mean()
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=8)
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--transform-size", type=int, default=4096)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()

    print(f"machine: {cpu_model()}, {os.cpu_count()} logical cores, Python {platform.python_version()}, "
          f"Pillow {Image.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        photos = make_photos(tmp, args.photos)
        sizes_px = sorted({Image.open(p).size[0] for p in photos})
        print(f"photos: {len(photos)} astronaut variants, {sizes_px} px squares, one face each; "
              f"detector upsample 1 on the 512 px ones, 0 above (as a user would)")
        shared_detector()  # load the model outside the timings

        for size in args.sizes:
            print(f"\n== --size {size} --transform-size {args.transform_size}")
            # Stage split, one process.
            for fast in (False, True):
                t = AlignTimings()
                n = 0
                for p in photos:
                    up = 1 if Image.open(p).size[0] <= 512 else 0
                    n += len(align_faces(p, size, transform_size=args.transform_size, upsample=up, fast=fast, timings=t))
                total = t.detect + t.landmarks + t.transform
                label = "fast" if fast else "plain"
                print(f"  {label:5s} per face: detect {t.detect / n * 1000:7.1f} ms, landmarks {t.landmarks / n * 1000:5.1f} ms, "
                      f"transform {t.transform / n * 1000:7.1f} ms  (transform = {100 * t.transform / total:.0f}% "
                      f"of these stages; image decoding not included)")

            # Throughput through the file pipeline (decode + detect + align + PNG/JSON writes).
            for fast in (False, True):
                for workers in sorted({1, args.workers}):
                    out = tmp / f"out_{size}_{int(fast)}_{workers}"
                    opts = AlignOptions(size=size, transform_size=args.transform_size, upsample=0, fast=fast)
                    t0 = time.perf_counter()
                    results = list(align_files(photos, out, opts, workers=workers))
                    dt = time.perf_counter() - t0
                    faces = sum(len(r.outputs) // 2 for r in results)
                    failed = sum(r.error is not None for r in results)
                    print(f"  align_files {'fast' if fast else 'plain':5s} workers={workers}: {faces} faces in {dt:6.2f} s "
                          f"= {faces / dt:5.2f} faces/s (upsample 0{', %d photos skipped' % failed if failed else ''}; "
                          f"pool start-up included)")

            # Fast vs plain: same geometry, PSNR of the crops.
            values = []
            for p in photos:
                im = Image.open(p).convert("RGB")
                face = align_faces(im, size, transform_size=args.transform_size, upsample=0 if im.size[0] > 512 else 1)
                lm = np.asarray(face[0].sidecar["landmarks"])
                g = ffhq_geometry(lm, im.size, size, args.transform_size)
                values.append((psnr(render_aligned(im, g), render_aligned(im, g, fast=True)), fast_transform_size(g)))
                if p == photos[0]:
                    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (im.size[1], im.size[0], 3), dtype=np.uint8))
                    worst = psnr(render_aligned(noise, g), render_aligned(noise, g, fast=True))
            ps = [v for v, _ in values]
            print(f"  fast vs plain PSNR on the photos: min {min(ps):.1f} dB, mean {np.mean(ps):.1f} dB "
                  f"(fast transform sizes {sorted({t for _, t in values})}); on white noise: {worst:.1f} dB")


if __name__ == "__main__":
    main()
