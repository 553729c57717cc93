"""``automod pull``: the reference's released models into the model cache, by name."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import UserError
from ..hub import cache
from ..hub.pull import catalog_rows, pull
from ..model.provenance import incomplete_training, trained_on
from .common import say


class _RichProgress:
    """Bytes, speed and ETA on stderr while a file downloads (the core only reports numbers)."""

    def __init__(self) -> None:
        self._progress = None
        self._task = None

    def start(self, description: str, total: int | None, completed: int) -> None:
        from rich.console import Console
        from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                                   TransferSpeedColumn)

        self.finish()
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True))
        self._progress.start()
        self._task = self._progress.add_task(description, total=total, completed=completed)

    def update(self, completed: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=completed)

    def finish(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def pull_command(
    name: Optional[str] = typer.Argument(None, help="A released model: ffhq256, ffhq512, celebahq256, lsuncars256, "
                                                    "lsunbedrooms256 (or your own name with --url/--from)."),
    url: Optional[str] = typer.Option(None, "--url", help="Take the checkpoint from here instead (a mirror; "
                                                          "http://, https:// or file://)."),
    from_file: Optional[Path] = typer.Option(None, "--from", help="Use a checkpoint you downloaded already."),
    keep_original: bool = typer.Option(False, "--keep-original", help="Keep the downloaded .pth (and attribute "
                                                                      "files) in the cache's downloads/ folder."),
    force: bool = typer.Option(False, "--force", help="Pull again even if the model is cached."),
    retries: int = typer.Option(5, "--retries", min=0, help="Attempts in a row without progress before giving up "
                                                            "(an interrupted download resumes with Range requests)."),
    list_: bool = typer.Option(False, "--list", help="List the released models, their URLs, and which are cached."),
    as_json: bool = typer.Option(False, "--json", help="With --list: one JSON object per line."),
) -> None:
    """Download a released model of the reference implementation, convert it and cache it under its name.

    Afterwards every -m/--model takes the name, e.g. 'automod edit photo.jpg --align --attr smile -m ffhq256'.
    """
    if list_:
        _print_list(as_json)
        return
    if name is None:
        raise UserError("name a model to pull ('automod pull --list' shows them)")
    result = pull(name, url=url, from_file=from_file, keep_original=keep_original, force=force, say=say,
                  progress=_RichProgress(), retries=retries)
    if result.already_cached:
        say(f"{name} is cached already: {result.path} (--force pulls it again)")
        return
    m = result.model
    say(f"pulled {name}: {result.path} ({m.resolution}² {m.config.variant} decoder, iteration "
        f"{m.provenance.get('iteration')}, sha256 of the checkpoint {m.provenance['pulled']['sha256'][:16]}…)")
    what = trained_on(m.provenance)
    if what:
        say(f"trained on: {what}")
    problem = incomplete_training(m.provenance, m.resolution)
    if problem:
        say(f"warning: {problem}")
    if result.attributes:
        say(f"attributes: {', '.join(result.attributes)} (edit with --attr NAME -m {name})")
    for path in result.kept:
        say(f"kept {path}")
    if result.attribute_failures:
        for f in result.attribute_failures:
            say(f"automod: attribute '{f.source.name}' not attached: {f.reason}")
            say(f"  by hand: {f.manual}")
        raise typer.Exit(code=1)


def _print_list(as_json: bool) -> None:
    rows = catalog_rows()
    if as_json:
        for r in rows:
            print(json.dumps(r))
        return
    print(f"models cached in {cache.models_dir()}")
    print(f"{'name':<16}{'size':>6}  {'cached':<7}{'attributes':<26}url")
    for r in rows:
        attrs = ", ".join(r["attributes"]) or "-"
        print(f"{r['name']:<16}{str(r['resolution']) + '²':>6}  {'yes' if r['cached'] else 'no':<7}{attrs:<26}{r['url']}")
    others = [n for n in cache.cached_names() if n not in {r["name"] for r in rows}]
    if others:
        print("also cached: " + ", ".join(others))


def register(app: typer.Typer) -> None:
    app.command("pull")(pull_command)
