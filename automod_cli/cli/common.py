"""Options and helpers shared by the verb modules (parsing and printing only)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

import typer

from ..devices import resolve_device  # noqa: F401  (re-exported for the verb modules)

DeviceOpt = typer.Option("auto", "--device", help="cpu, cuda, cuda:N or auto (CUDA when present).")
BatchOpt = typer.Option(16, "--batch-size", "-b", min=1, help="Images per batch.")
SeedOpt = typer.Option(0, "--seed", help="Random seed.")
OverwriteOpt = typer.Option(False, "--overwrite", help="Replace existing output files.")


def say(msg: str) -> None:
    """Progress and results go to stderr so stdout stays clean for --json and pipes."""
    print(msg, file=sys.stderr)


def finish_batch(failures: Sequence[tuple[Path, str]], what: str = "input") -> None:
    """List the inputs that could not be processed and exit non-zero if there were any."""
    if not failures:
        return
    say(f"automod: {len(failures)} {what}{'s' if len(failures) != 1 else ''} skipped:")
    for _path, reason in failures:
        say(f"  {reason}")
    raise typer.Exit(code=1)
