"""Verbs on model files: info, convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelFileError
from ..hub.cache import resolve_model
from ..io import modelfile
from ..model import Automodulator
from ..model.provenance import incomplete_training, trained_on
from ..pipeline import LATENTS_FORMAT
from ..model.scales import describe_blocks, group_ranges
from .common import OverwriteOpt, say


def info(
    model: Optional[str] = typer.Argument(None, help="A model file, a cached model's name, or a latents file "
                                                     "(default: the default model)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Print what is inside a model (or latents) file; with no argument, the default model's."""
    path = resolve_model(model)
    meta = modelfile.read_metadata(path)
    if meta.get("format") == LATENTS_FORMAT:
        _latents_info(path, meta, as_json)
        return
    m = Automodulator.load(path)
    s = m.summary()
    s["file"] = str(path)
    s["sha256"] = modelfile.file_sha256(path)
    s["scales"] = {"resolutions": m.config.resolutions,
                   "groups": {k: describe_blocks(v) for k, v in group_ranges(m.n_blocks).items()}}
    s["trained_on"] = trained_on(m.provenance)
    s["unfinished_training"] = incomplete_training(m.provenance, m.resolution)
    if as_json:
        print(json.dumps(s))
        return
    c = s["config"]
    print(f"file        {s['file']}" + ("  (the default model)" if model is None else ""))
    print(f"sha256      {s['sha256']}")
    print(f"model       {c['resolution']}² {c['variant']} decoder, width ×{c['width']:g}, {c['latent_dim']}-d codes, "
          f"{m.n_blocks} blocks")
    print(f"parameters  encoder {s['encoder_parameters'] / 1e6:.2f}M, decoder {s['decoder_parameters'] / 1e6:.2f}M")
    print("scales      " + ", ".join(str(r) for r in m.config.resolutions) + "; groups "
          + ", ".join(f"{k}={v}" for k, v in s["scales"]["groups"].items()))
    print(f"trained on  {s['trained_on'] or 'not recorded in its provenance'}")
    if s["unfinished_training"]:
        print(f"WARNING     {s['unfinished_training']}")
    if s["attributes"]:
        for name, a in sorted(s["attributes"].items()):
            print(f"attribute   {name} (scales {a.get('scales') or 'all'})")
    else:
        print("attributes  none")
    if s["provenance"]:
        print("provenance")
        _print_tree(s["provenance"], indent=2)


def _latents_info(path: Path, meta: dict, as_json: bool) -> None:
    tensors, _ = modelfile.read_tensors(path, what="latents file")
    codes = tensors.get("codes")
    try:
        names = json.loads(meta.get("names", "[]"))
    except json.JSONDecodeError:
        names = []
    shape = list(codes.shape) if codes is not None else []
    record = {"file": str(path), "format": LATENTS_FORMAT, "codes": shape, "names": names,
              "model": meta.get("model"), "model_sha256": meta.get("model_sha256")}
    if as_json:
        print(json.dumps(record))
        return
    kind = "one code per image" if len(shape) == 2 else "a code per block per image" if len(shape) == 3 else "?"
    shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
    print(f"file        {path}")
    print("format      latents file (automod encode)")
    print(f"codes       {' × '.join(map(str, shape))} ({kind})")
    print(f"names       {shown or 'none'}")
    print(f"model       {record['model'] or 'not recorded'}")
    if record["model_sha256"]:
        print(f"model hash  {record['model_sha256']}")


def _print_tree(value, indent: int) -> None:
    """Nested provenance as indented ``key: value`` lines (lists of scalars on one line)."""
    pad = " " * indent
    for key, v in value.items():
        if isinstance(v, dict) and v:
            print(f"{pad}{key}:")
            _print_tree(v, indent + 2)
        elif isinstance(v, list) and any(isinstance(x, (dict, list)) for x in v):
            print(f"{pad}{key}:")
            for i, x in enumerate(v):
                if isinstance(x, dict):
                    print(f"{pad}  [{i}]")
                    _print_tree(x, indent + 4)
                else:
                    print(f"{pad}  - {x}")
        else:
            print(f"{pad}{key}: {', '.join(map(str, v)) if isinstance(v, list) else v}")


def convert(
    src: Path = typer.Argument(..., help="A checkpoint of the reference implementation (.pth)."),
    output: Path = typer.Option(..., "--output", "-o", help="Model file to write (.safetensors)."),
    resolution: Optional[int] = typer.Option(None, "--resolution", help="Top resolution (default: the checkpoint's phase)."),
    overwrite: bool = OverwriteOpt,
) -> None:
    """Import a released checkpoint of the reference implementation (read with weights_only=True)."""
    try:
        from ..io.reference import convert_command_core
    except ImportError as e:  # pragma: no cover - only while the converter is absent
        raise ModelFileError(f"the converter is not available ({e})") from None
    summary = convert_command_core(src, output, resolution, overwrite)
    notes = summary.pop("notes", [])
    say(f"wrote {output}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    for note in notes:
        say(f"note: {note}")


def register(app: typer.Typer) -> None:
    app.command("info")(info)
    app.command("convert")(convert)
