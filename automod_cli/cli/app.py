"""The ``automod`` Typer app: global options, and turning errors into one line and an exit code.

Each verb group lives in its own module with a ``register(app)`` function; ``build_app`` calls them.
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
import warnings

import typer
from typer.core import TyperGroup

from .. import __version__
from ..errors import UserError

VERB_MODULES = ("codes", "attr", "model", "hub", "train", "metrics", "data", "align", "demo")

STATE = {"debug": False}

EXIT_CODES = ("Exit status: 0 done; 1 some inputs were skipped (the others were processed; the skipped ones are "
              "listed); 2 a usage, input or write error (one line names the file and the problem); 3 the metric "
              "networks' weights are missing (the line says where to put them and where they are published); "
              "130 interrupted.")
HELP_WIDTH_NOT_A_TERMINAL = 160  # rich would cut option names at 80 columns in a pipe or a file


def _value_options(command) -> dict[str, str]:
    """Every spelling of the options of ``command`` that take one value, mapped to their main spelling."""
    out = {}
    for param in getattr(command, "params", []):
        if getattr(param, "param_type_name", "") != "option" or param.is_flag or param.multiple or param.count:
            continue
        names = list(param.opts) + list(param.secondary_opts)
        main = max(names, key=len)
        for name in names:
            out[name] = main
    return out


def refuse_repeated_options(ctx, command, args: list[str]) -> None:
    """``--keep A --keep B`` would silently use B: refuse an option that takes one value given twice."""
    if hasattr(command, "get_command"):  # a group: look at the verb it runs
        words = [a for a in args if not a.startswith("-")]
        sub = command.get_command(ctx, words[0]) if words else None
        if sub is not None:
            refuse_repeated_options(ctx, sub, args[args.index(words[0]) + 1:])
        return
    options = _value_options(command)
    seen: dict[str, list[str]] = {}
    k = 0
    while k < len(args):
        token = args[k]
        if token == "--":
            break
        name, eq, value = token.partition("=")
        if name in options and token.startswith("--"):
            if not eq:
                value = args[k + 1] if k + 1 < len(args) else ""
                k += 1
            seen.setdefault(options[name], []).append(value)
        elif token[:2] in options and not token.startswith("--"):  # -o VALUE or -oVALUE
            value = token[2:] or (args[k + 1] if k + 1 < len(args) else "")
            if not token[2:]:
                k += 1
            seen.setdefault(options[token[:2]], []).append(value)
        k += 1
    for main, values in seen.items():
        if len(values) > 1:
            raise UserError(f"{main} takes one value but was given {len(values)} times ({', '.join(values)}); "
                            "give it once")


class AutomodGroup(TyperGroup):
    """The root command group: refuses repeated single-value options before a verb runs."""

    def resolve_command(self, ctx, args):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not ctx.resilient_parsing:
            refuse_repeated_options(ctx, command, rest)
        return name, command, rest


def _print_version(value: bool) -> None:
    if value:
        import platform

        import torch

        print(f"automod {__version__} (torch {torch.__version__}, Python {platform.python_version()})")
        raise typer.Exit()


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"automod: warning: {message}", file=sys.stderr)


def build_app() -> typer.Typer:
    if not sys.stdout.isatty() and not os.environ.get("TERMINAL_WIDTH"):
        from typer import rich_utils

        rich_utils.MAX_WIDTH = HELP_WIDTH_NOT_A_TERMINAL
    app = typer.Typer(
        name="automod",
        cls=AutomodGroup,
        help="Deep Automodulators: train, encode, mix, edit, sample and evaluate.",
        epilog=EXIT_CODES,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
        context_settings={"help_option_names": ["-h", "--help"]},
    )

    @app.callback()
    def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors."),
              version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                           help="Print the version (and torch's) and exit.")) -> None:
        STATE["debug"] = STATE["debug"] or debug

    for name in VERB_MODULES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"{__package__}.{name}":
                continue  # verb group not built yet
            raise
        module.register(app)
    return app


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, not only before the verb.
    if "--debug" in args:
        args = [a for a in args if a != "--debug"]
        STATE["debug"] = True
    warnings.showwarning = _show_warning
    code = 0
    try:
        # Typer's standalone mode prints usage errors and exits (SystemExit passes through).
        build_app()(args=args, prog_name="automod")
    except UserError as e:
        if STATE["debug"]:
            traceback.print_exc()
        print(f"automod: error: {e}", file=sys.stderr)
        code = e.exit_code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except typer.Exit as e:
        code = e.exit_code
    except KeyboardInterrupt:
        print("automod: interrupted", file=sys.stderr)
        code = 130
    except Exception as e:  # a bug: one line, unless --debug
        if STATE["debug"]:
            traceback.print_exc()
        print(f"automod: internal error: {type(e).__name__}: {e} (run with --debug for the traceback)",
              file=sys.stderr)
        code = 1
    return code


def run() -> None:
    sys.exit(main())
