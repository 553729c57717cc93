"""Verbs on model files: info, convert."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import ModelFileError
from ..io import modelfile
from ..model import Automodulator
from ..model.scales import describe_blocks, group_ranges
from .common import OverwriteOpt, say


def info(
    path: Path = typer.Argument(..., help="A model file (.safetensors) or a latents file."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of a table."),
) -> None:
    """Print what is inside a model (or latents) file."""
    meta = modelfile.read_metadata(path)
    if meta.get("format") == "automod-latents":
        tensors, _ = modelfile.read_tensors(path)
        names = json.loads(meta.get("names", "[]"))
        record = {"file": str(path), "format": "automod-latents", "codes": list(tensors["codes"].shape),
                  "names": names, "model": meta.get("model"), "model_sha256": meta.get("model_sha256")}
        print(json.dumps(record, indent=None if as_json else 2))
        return
    model = Automodulator.load(path)
    s = model.summary()
    s["file"] = str(path)
    s["sha256"] = modelfile.file_sha256(path)
    s["scales"] = {"resolutions": model.config.resolutions,
                   "groups": {k: describe_blocks(v) for k, v in group_ranges(model.n_blocks).items()}}
    if as_json:
        print(json.dumps(s))
        return
    c = s["config"]
    print(f"file        {s['file']}")
    print(f"sha256      {s['sha256']}")
    print(f"model       {c['resolution']}² {c['variant']} decoder, width ×{c['width']:g}, {c['latent_dim']}-d codes, "
          f"{model.n_blocks} blocks")
    print(f"parameters  encoder {s['encoder_parameters'] / 1e6:.2f}M, decoder {s['decoder_parameters'] / 1e6:.2f}M")
    print("scales      " + ", ".join(str(r) for r in model.config.resolutions) + "; groups "
          + ", ".join(f"{k}={v}" for k, v in s["scales"]["groups"].items()))
    if s["attributes"]:
        for name, a in sorted(s["attributes"].items()):
            print(f"attribute   {name} (scales {a.get('scales') or 'all'})")
    else:
        print("attributes  none")
    for k, v in s["provenance"].items():
        print(f"provenance  {k}: {v if not isinstance(v, (dict, list)) else json.dumps(v)}")


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
