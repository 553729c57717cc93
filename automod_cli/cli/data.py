"""``automod data ...``: data-set tools (``toyfaces``: draw or re-render procedural faces)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .common import OverwriteOpt, SeedOpt, plural, say


def register(app: typer.Typer) -> None:
    data = typer.Typer(help="Data-set tools.", no_args_is_help=True)

    @data.command("toyfaces")
    def toyfaces(
        out: Path = typer.Option(..., "--out", "-o", help="Output folder (images, labels.csv, toyfaces.json)."),
        n: int = typer.Option(20000, "--n", help="Number of faces to draw."),
        size: Optional[int] = typer.Option(None, "--size", help="Image size in pixels (64 by default; with "
                                           "--from-labels, the size recorded beside the labels)."),
        seed: int = SeedOpt,
        from_labels: Optional[Path] = typer.Option(None, "--from-labels", help="Re-render the rows of this "
                                                   "(possibly edited) labels.csv instead of drawing new faces."),
        workers: int = typer.Option(0, "--workers", min=0, help="Worker processes (0: one per CPU core)."),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Draw cartoon faces whose factors live at known scales, with their labels.csv."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

        from ..data import toyfaces as tf
        from ..errors import UserError

        if from_labels is None and n < 1:
            raise UserError(f"--n must be at least 1, got {n}")
        if size is not None:
            tf.check_size(size)
        rows = tf.read_labels(from_labels) if from_labels is not None else None
        total = len(rows) if rows is not None else n
        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeRemainingColumn(), transient=True, console=_stderr_console()) as bar:
            task = bar.add_task("drawing faces", total=total)
            kw = dict(overwrite=overwrite, workers=workers or None, progress=lambda k: bar.advance(task, k))
            if from_labels is not None:
                labels = tf.rerender(from_labels, out, size=size, **kw)
            else:
                labels = tf.generate(out, n, size=size or 64, seed=seed, **kw)
        say(f"wrote {plural(total, 'face')} and {labels}")

    app.add_typer(data, name="data")


def _stderr_console():
    from rich.console import Console

    return Console(stderr=True)
