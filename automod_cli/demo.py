"""The main job on the bundled default: prove training works on a tiny model, then run every
operation with the bundled ``toy64`` model and write a gallery.

Steps: draw toyfaces → train a ``toy32`` model for a short budget → draw held-out toy faces at the
bundled model's resolution → encode (latents file), reconstruct, mix at every scale group,
interpolate, edit (every attribute the model has), random and conditional samples → ``index.html``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import torch

from . import pipeline
from .data import toyfaces
from .devices import resolve_device
from .gallery import Panel, build_gallery, write_index
from .io.images import make_grid, save_image


def free_folder(base: Path) -> Path:
    """``base`` if it does not exist yet, else ``base-2``, ``base-3``…: a demo never overwrites."""
    if not base.exists():
        return base
    k = 2
    while Path(f"{base}-{k}").exists():
        k += 1
    return Path(f"{base}-{k}")


def run_demo(out_dir: Path, model_path: Path | None, train_samples: str, device: str,
             say: Callable[[str], None], progress: bool = True) -> Path:
    from .train import run_training
    from .train.schedule import resolve_config

    out_dir.mkdir(parents=True)
    t0 = time.time()

    # 1. Training works: a toy32 model on freshly drawn faces, for a short budget.
    say(f"[1/3] drawing 2,000 toy faces at 32² and training a toy32 model for {train_samples} samples")
    data = out_dir / "train-data"
    toyfaces.generate(data, n=2000, size=32, seed=0, progress=None)
    cfg = resolve_config("toy32", {"duration": train_samples, "device": device, "workers": 0})
    run_dir = out_dir / "train-run"
    code = run_training(cfg, data, run_dir, command="automod demo", say=say, progress=progress)
    if code != 0:
        raise SystemExit(code)
    trained = pipeline.load_model(run_dir / "model.safetensors")
    t_train = time.time() - t0

    # 2. The bundled model on held-out faces (a seed the bundled model never saw).
    say("[2/3] running every verb with the bundled model")
    model = pipeline.load_model(model_path, resolve_device(device))
    rows = toyfaces.sample_rows(8, seed=424242)
    images = toyfaces.render_tensor(rows, model.resolution)
    inputs_dir = out_dir / "inputs"
    for k, img in enumerate(images):
        save_image(img, inputs_dir / f"face_{k}.png", overwrite=False)
    z = model.encode(images)
    pipeline.save_latents(out_dir / "latents.safetensors", z.cpu(), [f"face_{k}" for k in range(len(z))], model)
    gallery = out_dir / "gallery"
    panels = build_gallery(model, images, gallery)

    # 3. The model trained a minute ago: its samples and reconstructions, honestly labelled.
    say("[3/3] adding the freshly trained toy32 model to the gallery")
    x32 = toyfaces.render_tensor(rows, trained.resolution)
    recon = trained.reconstruct(x32).cpu()
    save_image(make_grid(torch.stack([x32, recon], 1).reshape(-1, *x32.shape[1:]).clamp(-1, 1), nrow=8),
               gallery / "demo_trained_reconstructions.png", overwrite=True)
    samples = int(trained.provenance.get("samples", 0))
    panels.append(Panel("The model this demo just trained", "demo_trained_reconstructions.png",
                        f"toy32 after {samples:,} samples ({t_train:.0f} s on {device}): input, reconstruction "
                        "pairs. A real run trains for hours; this only shows the trainer works."))
    write_index(gallery, panels, model)
    return gallery / "index.html"
