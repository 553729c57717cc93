"""``automod attr``: attribute directions — learn them from examples, import the reference's, list them.

Directions are written into the model file, or with ``--out`` into a separate attribute file; a model
that ships with automod is never rewritten: the model goes, with the direction, into the user's copy
in the model cache (``pipeline.store_attribute`` says where).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from .. import pipeline
from ..io.modelfile import file_sha256
from ..io.reference import load_reference_attribute
from ..model import parse_scales
from .codes import AlignOpt, ModelOpt, _read, _setup
from .common import BatchOpt, DeviceOpt, OverwriteOpt, finish_batch, say

attr_app = typer.Typer(help="Attribute directions: learn them from examples, import the reference's, list them.",
                       no_args_is_help=True)

OutOpt = typer.Option(None, "--out", help="Write to a separate attribute file instead of the model file.")


def _report(name: str, target: Path, note: str | None, detail: str) -> None:
    say(f"added '{name}' to {target} ({detail})")
    if note:
        say(f"note: {note}")


@attr_app.command("add")
def attr_add(
    name: str = typer.Argument(..., help="Attribute name, e.g. smile."),
    with_: List[str] = typer.Option(..., "--with", help="Images WITH the attribute (files, folders, globs)."),
    without: List[str] = typer.Option(..., "--without", help="Images WITHOUT the attribute."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="Default scales for edits with it, e.g. 16-64."),
    out: Optional[Path] = OutOpt,
    model_path: Optional[Path] = ModelOpt, align: bool = AlignOpt, batch_size: int = BatchOpt,
    device: str = DeviceOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """δ = mean code of --with − mean code of --without, stored in the model file (or --out FILE)."""
    model = _setup(model_path, device, 0)
    if scales is not None:
        parse_scales(scales, model.n_blocks)  # validate before the slow part
    ins_with, ins_without = _read(model, with_, align, "--with images"), _read(model, without, align, "--without images")
    delta = pipeline.attribute_direction(model.encode(ins_with.images, batch_size).cpu(),
                                         model.encode(ins_without.images, batch_size).cpu())
    target, note = pipeline.store_attribute(
        model, name, delta, scales, {"n_with": len(ins_with), "n_without": len(ins_without),
                                     "norm": round(float(delta.norm()), 6)}, out, overwrite)
    _report(name, target, note, f"|δ| = {float(delta.norm()):.4f}, {len(ins_with)} with, {len(ins_without)} without")
    finish_batch(ins_with.failures + ins_without.failures)


@attr_app.command("import")
def attr_import(
    file: Path = typer.Argument(..., help="A direction of the reference implementation (pioneer/attrib/*, a "
                                          "pickled (1, 512) tensor); read without running pickled code."),
    name: str = typer.Option(..., "--name", help="Attribute name to store it as, e.g. smile."),
    scales: Optional[str] = typer.Option(None, "--scales", "-s", help="Default scales for edits with it, e.g. 16-64."),
    out: Optional[Path] = OutOpt,
    model_path: Optional[Path] = ModelOpt, overwrite: bool = OverwriteOpt,
) -> None:
    """Import a reference attribute direction (torch.load with weights_only=True; anything else is refused)."""
    model = pipeline.load_model(model_path)
    delta = load_reference_attribute(file, model.latent_dim)
    info = {"source": "imported reference attribute direction", "file": file.name, "sha256": file_sha256(file)}
    target, note = pipeline.store_attribute(model, name, delta, scales, info, out, overwrite)
    _report(name, target, note, f"|δ| = {float(delta.norm()):.4f}, scales {scales or 'all'}, from {file}")


@attr_app.command("list")
def attr_list(
    model_path: Optional[Path] = ModelOpt,
    attr_file: Optional[Path] = typer.Option(None, "--attr-file", help="Also list an attribute file's directions."),
) -> None:
    """List the attribute directions of a model (and of an attribute file)."""
    model = pipeline.load_model(model_path)
    if attr_file is not None:
        pipeline.load_attributes(attr_file, model)
    if not model.attributes:
        print("(no attributes; add one with 'automod attr add NAME --with DIR --without DIR')")
    for name, a in sorted(model.attributes.items()):
        extra = ", ".join(f"{k}={v}" for k, v in a.info.items())
        print(f"{name}\tscales={a.scales or 'all'}\t|δ|={float(a.delta.norm()):.4f}\t{extra}")


def register(app: typer.Typer) -> None:
    app.add_typer(attr_app, name="attr")
