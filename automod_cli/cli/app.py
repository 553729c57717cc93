"""The ``automod`` Typer app: global options, and turning errors into one line and an exit code.

Each verb group lives in its own module with a ``register(app)`` function; ``build_app`` calls them.
"""

from __future__ import annotations

import importlib
import sys
import traceback
import warnings

import typer

from ..errors import UserError

VERB_MODULES = ("codes", "attr", "model", "hub", "train", "metrics", "data", "align", "demo")

STATE = {"debug": False}


def _show_warning(message, category, filename, lineno, file=None, line=None):  # noqa: ARG001
    print(f"automod: warning: {message}", file=sys.stderr)


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="automod",
        help="Deep Automodulators: train, encode, mix, edit, sample and evaluate.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode="rich",
    )

    @app.callback()
    def _root(debug: bool = typer.Option(False, "--debug", help="Show Python tracebacks on errors.")) -> None:
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
