"""The main job on the bundled default: prove training works on a tiny model, then run every
operation with the bundled ``toy64`` model and write a gallery.

Steps: draw toyfaces → train a ``demo32`` model for a short budget (to its top resolution, 32²) → draw
held-out toy faces at the bundled model's resolution → encode (latents file), reconstruct, mix at every
scale group, interpolate, edit (every attribute the model has), random and conditional samples →
``index.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from . import pipeline
from .data import toyfaces
from .devices import resolve_device
from .gallery import Panel, build_gallery, save_labelled, write_index
from .io.images import save_image
from .metrics.psnr import reconstruction_psnr


def free_folder(base: Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``…: a demo never overwrites."""
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")


DEMO_PRESET = "demo32"  # a toy 32² schedule short enough to reach its top resolution in a couple of minutes
HELD_OUT_SEED = 424242  # faces neither the bundled model nor the demo's own run ever saw


def run_demo(out_dir: Path, model_path: Path | None, train_samples: str | None, device: str,
             say: Callable[[str], None], progress: bool = True) -> Path:
    from .train import run_training
    from .train.schedule import resolve_config

    out_dir.mkdir(parents=True)
    t0 = time.time()

    # 1. Training works: a tiny model on freshly drawn faces, for a short budget.
    cfg = resolve_config(DEMO_PRESET, {"duration": train_samples, "device": device, "workers": 0})
    say(f"[1/3] drawing 2,000 toy faces at 32² and training a {DEMO_PRESET} model for {cfg['duration']:,} samples")
    data = out_dir / "train-data"
    toyfaces.generate(data, n=2000, size=32, seed=0, progress=None)
    run_dir = out_dir / "train-run"
    code = run_training(cfg, data, run_dir, command="automod demo", say=say, progress=progress)
    if code != 0:
        raise SystemExit(code)
    trained = pipeline.load_model(run_dir / "model.safetensors")
    t_train = time.time() - t0

    # 2. The bundled model on held-out faces (a seed the bundled model never saw).
    say("[2/3] running every verb with the bundled model")
    model = pipeline.load_model(model_path, resolve_device(device))
    rows = toyfaces.sample_rows(8, seed=HELD_OUT_SEED)
    images = toyfaces.render_tensor(rows, model.resolution)
    inputs_dir = out_dir / "inputs"
    for k, img in enumerate(images):
        save_image(img, inputs_dir / f"face_{k}.png", overwrite=False)
    z = model.encode(images)
    pipeline.save_latents(out_dir / "latents.safetensors", z.cpu(), [f"face_{k}" for k in range(len(z))], model)
    gallery = out_dir / "gallery"
    panels = build_gallery(model, images, gallery, group_notes=toyfaces.GROUP_NOTES)

    # 3. The model trained a minute ago: its samples and reconstructions, honestly labelled.
    say(f"[3/3] adding the freshly trained {DEMO_PRESET} model to the gallery")
    x = toyfaces.render_tensor(toyfaces.sample_rows(64, seed=HELD_OUT_SEED), trained.resolution)
    recon = trained.reconstruct(x).cpu()
    save_labelled(torch.stack([x[:8], recon[:8]], 1).reshape(-1, *x.shape[1:]), 8,
                  gallery / "demo_trained_reconstructions.png",
                  [f"The {DEMO_PRESET} model this demo trained: held-out input, reconstruction pairs"])
    prov = trained.provenance
    where = resolve_device(device).type
    reached, top = int(prov["trained_resolution"]), trained.resolution
    stage = "its top resolution" if reached == top else f"only {reached}² of its {top}² (a longer run gets there)"
    panels.append(Panel("The model this demo just trained", "demo_trained_reconstructions.png",
                        f"{DEMO_PRESET} after {int(prov['samples_seen']):,} samples ({t_train:.0f} s on {where}), "
                        f"trained up to {stage}: input, reconstruction pairs of held-out faces; reconstruction PSNR "
                        f"{reconstruction_psnr(recon, x):.1f} dB over 64 of them. A real run trains for hours; this shows the "
                        "trainer works."))
    write_index(gallery, panels, model)
    return gallery / "index.html"
