"""A gallery of everything a model does: reconstructions, mixes at each scale group, interpolations,
attribute edits, random and conditional samples, as PNG grids and an ``index.html``.

``automod demo`` builds one with the bundled model; it works for any model and any aligned images.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import torch

from . import pipeline
from .io.atomic import write_text_atomic
from .io.images import make_grid, save_image, save_pil, tensor_to_pil
from .model import Automodulator, code_stack, edit_stack, group_ranges, mix_stack, parse_scales, random_codes
from .model.scales import describe_blocks


@dataclass
class Panel:
    title: str
    file: str
    caption: str


def _save(grid_images: torch.Tensor, nrow: int, path: Path) -> None:
    save_image(make_grid(grid_images.clamp(-1, 1), nrow=nrow), path, overwrite=True)


def save_labelled(grid_images: torch.Tensor, nrow: int, path: Path, title: list[str],
                   corner: list[str] = ()) -> None:
    """A grid shown at 2× (tiles of small models are tiny) under a strip of ``title`` lines, with
    ``corner`` lines written into the first tile (the blank one of a mixing matrix)."""
    from PIL import Image, ImageDraw, ImageFont

    grid = tensor_to_pil(make_grid(grid_images.clamp(-1, 1), nrow=nrow))
    scale = 2 if grid_images.shape[-1] <= 128 else 1
    grid = grid.resize((grid.width * scale, grid.height * scale), Image.NEAREST)
    font = ImageFont.load_default(size=13)
    line_h = 17
    page = Image.new("RGB", (grid.width, grid.height + line_h * len(title) + 6), (255, 255, 255))
    page.paste(grid, (0, line_h * len(title) + 6))
    draw = ImageDraw.Draw(page)
    for k, line in enumerate(title):
        draw.text((4, 3 + k * line_h), line, fill=(20, 20, 20), font=font)
    top = line_h * len(title) + 6 + 2 * scale
    for k, line in enumerate(corner):
        draw.text((4 * scale, top + 4 + k * line_h), line, fill=(20, 20, 20), font=font)
    save_pil(page, path, overwrite=True)


def build_gallery(model: Automodulator, images: torch.Tensor, out_dir: str | Path, seed: int = 0,
                  edit_strength: float = 1.0, group_notes: dict[str, str] | None = None) -> list[Panel]:
    """Write the gallery for ``images`` ([N ≥ 4, 3, R, R], aligned like the training data).

    ``group_notes`` says what each scale group carries in this data (e.g. {"coarse": "layout"}), for
    the labels of the mixing figures."""
    group_notes = group_notes or {}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_blocks = model.n_blocks
    panels: list[Panel] = []
    x = images[:8]
    z = model.encode(x).cpu()

    recon = model.decode(z).cpu()
    _save(torch.stack([x, recon], 1).reshape(-1, *x.shape[1:]), 8, out / "reconstructions.png")
    panels.append(Panel("Reconstructions", "reconstructions.png",
                        "Pairs: input, then decode(encode(input)). One encoder pass per image, no optimisation."))

    za, zb, xa, xb = z[:4], z[4:8] if len(z) >= 8 else z[:4], x[:4], x[4:8] if len(x) >= 8 else x[:4]
    for group, blocks in group_ranges(n_blocks).items():
        if not blocks:
            continue
        cells = pipeline.mix_matrix(model, za, zb, blocks).cpu()
        scales = describe_blocks(blocks)
        what = f" ({group_notes[group]})" if group in group_notes else ""
        save_labelled(pipeline.matrix_grid(xa, xb, cells), len(zb) + 1, out / f"mix_{group}.png",
                      [f"Mixing at {group} scales {scales}: top row B drives {group} scales{what},",
                       "left column A drives all other scales"], corner=["A (left): rest", f"B (top): {scales}"])
        panels.append(Panel(f"Mixing at {group} scales ({scales})", f"mix_{group}.png",
                            f"Row i, column j: the top image B_j drives the {group} scales{what}, the left "
                            "image A_i the rest."))

    strip = pipeline.interpolation_stacks(z[0:1], z[1:2], 8, list(range(n_blocks)), n_blocks)
    _save(model.decode(strip).cpu(), 8, out / "interpolation.png")
    panels.append(Panel("Interpolation", "interpolation.png", "Spherical interpolation between two codes."))
    square = pipeline.interpolation_square(z[:4], 5, list(range(n_blocks)), n_blocks)
    _save(model.decode(square).cpu(), 5, out / "interpolation_square.png")
    panels.append(Panel("Interpolation between four faces", "interpolation_square.png",
                        "Corners are the reconstructions of four inputs."))

    strengths = [-2 * edit_strength, -edit_strength, 0.0, edit_strength, 2 * edit_strength]
    for name, attr in sorted(model.attributes.items()):
        blocks = parse_scales(attr.scales or "all", n_blocks)
        rows = [model.decode(edit_stack(code_stack(z[:6], n_blocks), attr.delta, k, blocks)).cpu() for k in strengths]
        grid = torch.stack([x[:6]] + rows, 1).reshape(-1, *x.shape[1:])  # input, then strengths across
        save_labelled(grid, len(strengths) + 1, out / f"edit_{name}.png",
                      [f"Edit {name}: input, then z + k·delta at scales {attr.scales or 'all'}, k = "
                       + ", ".join(f"{k:g}" for k in strengths)])
        panels.append(Panel(f"Edit: {name}", f"edit_{name}.png",
                            f"Each row: the input, then z + k·δ_{name} at scales {attr.scales or 'all'}, k = "
                            + ", ".join(f"{k:g}" for k in strengths) + " (k = 0 is the reconstruction)."))

    gen = torch.Generator().manual_seed(seed)
    samples = model.decode(random_codes(16, model.latent_dim, gen)).cpu()
    _save(samples, 8, out / "samples.png")
    panels.append(Panel("Random samples", "samples.png", "Codes drawn as normalize(N(0, I)), layer noise off."))

    for group in ("coarse", "middle"):
        blocks = group_ranges(n_blocks)[group]
        if not blocks:
            continue
        stacks = mix_stack(code_stack(random_codes(7, model.latent_dim, gen), n_blocks), z[0:1].expand(7, -1), blocks)
        cond = model.decode(stacks).cpu()
        _save(torch.cat([x[:1], cond]), 8, out / f"conditional_{group}.png")
        panels.append(Panel(f"Conditional samples, {group} scales kept", f"conditional_{group}.png",
                            f"First: the input. Then its {group} scales ({describe_blocks(blocks)}) kept, "
                            "the other scales drawn at random."))
    write_index(out, panels, model)
    return panels


def write_index(out_dir: Path, panels: list[Panel], model: Automodulator) -> Path:
    src = html.escape(str(model.source_path or "model"))
    body = "\n".join(
        f"<section><h2>{html.escape(p.title)}</h2><p>{html.escape(p.caption)}</p>"
        f"<img src=\"{html.escape(p.file)}\" alt=\"{html.escape(p.title)}\"></section>" for p in panels)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>automod gallery</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 1em}}
img{{image-rendering:pixelated;max-width:100%;width:720px}}section{{margin-bottom:2.5em}}</style></head>
<body><h1>automod gallery</h1><p>Model: <code>{src}</code> ({model.resolution}², {model.n_blocks} blocks).</p>
{body}
</body></html>
"""
    return write_text_atomic(out_dir / "index.html", page)
