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
# The figures: benchmarks/bench_precision.py.
PrecisionOpt = typer.Option(
    "fp32", "--precision",
    help="fp32, or bf16 (autocast; about 3x faster on CPUs with AMX and on GPUs). bf16 outputs differ from fp32 "
         "by about 0.4/255 per pixel on average (at most 16/255) with the bundled model, 1.5/255 with a "
         "full-width 256² model; codes agree to cosine > 0.9999.")
WorkersOpt = typer.Option(None, "--workers", "-j", min=0,
                          help="Processes that read and decode the inputs ahead of the model (default: none for "
                               "one batch, else one per CPU core but one, at most 8; 0 = read in this process).")
ProgressOpt = typer.Option(None, "--progress/--no-progress",
                           help="Progress bar on stderr (default: when stderr is a terminal and there are more "
                                "images than fit on a screen).")
GridOpt = typer.Option(None, "--grid/--no-grid",
                       help="Write the overview grid (default: only for 64 images or fewer; --grid on a larger set "
                            "shows the first 64).")


def check_precision(precision: str) -> str:
    if precision not in ("fp32", "bf16"):
        raise typer.BadParameter(f"use fp32 or bf16, not '{precision}'", param_hint="--precision")
    return precision


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


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 edit', '2 edits', '1,000 images'."""
    return f"{n:,} {word if n == 1 else (words or word + 's')}"


def finish_batch(failures: Sequence[tuple[Path, str]], what: str = "input") -> None:
    """List the inputs that could not be processed and exit non-zero if there were any."""
    if not failures:
        return
    say(f"automod: {plural(len(failures), what)} skipped:")
    for _path, reason in failures:
        say(f"  {reason}")
    raise typer.Exit(code=1)
