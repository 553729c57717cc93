"""``automod demo``: the main job on the bundled default."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from ..demo import free_folder, run_demo
from .common import DeviceOpt, say


def demo(
    output: Path = typer.Option(Path("automod-demo"), "--output", "-o",
                                help="Folder for everything (a new one: automod-demo-2, -3… if it exists)."),
    train_samples: Optional[str] = typer.Option(None, "--train-samples", help="Samples the tiny training run sees "
                                                "(k/M suffixes; default: the demo32 preset's duration)."),
    model_path: Optional[Path] = typer.Option(None, "--model", "-m", help="Model for the gallery (default: the bundled one)."),
    device: str = DeviceOpt,
) -> None:
    """Train a tiny model for a couple of minutes, then run every verb with the bundled model into a gallery."""
    out = free_folder(output)
    index = run_demo(out, model_path, train_samples, device, say)
    index = index.resolve()
    say(f"gallery written: {index} (open it in a browser)")
    print(index.parent)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
