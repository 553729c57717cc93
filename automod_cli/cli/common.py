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


def command_option(name: str):
    """The value of option ``name`` of the command being run (None outside a command, or if it has none).

    Lets shared set-up code (``codes._setup``) see an option such as ``--align`` without every verb
    passing it along. Click keeps the running command's context per thread; Typer ≥ 0.2x vendors Click
    as ``typer._click``, older Typers use the ``click`` package.
    """
    try:
        from typer._click.globals import get_current_context
    except ImportError:  # pragma: no cover - Typer with the external click package
        from click import get_current_context
    ctx = get_current_context(silent=True)
    return None if ctx is None else ctx.params.get(name)


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
