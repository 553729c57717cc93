"""``automod pull``: a released model (or any reference checkpoint) into the model cache, by name.

download (resumable) → check it is a reference checkpoint and, for a released name, the released one
(its iteration and decoder variant) → convert → attach the reference's attribute directions for it →
write ``models/NAME.safetensors`` atomically → delete the raw checkpoint (unless ``keep_original``).
A wrong file (an HTML error page, a truncated file, something else) is deleted, and nothing is written
into ``models/``; an interrupted download keeps only ``downloads/NAME/FILE.part`` for the next run.
"""

from __future__ import annotations

import datetime as _dt
import re
import shlex
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import ModelFileError, UserError
from ..io.modelfile import file_sha256
from ..io.reference import convert_reference_checkpoint, load_reference_attribute
from ..model import Automodulator, parse_scales
from . import cache
from .catalog import RELEASED, AttributeSource, ReleasedModel
from .download import DownloadError, Progress, discard_partial, download


@dataclass
class AttributeFailure:
    source: AttributeSource
    reason: str
    manual: str  # the commands that do it by hand


@dataclass
class PullResult:
    name: str
    path: Path
    model: Automodulator | None = None
    already_cached: bool = False
    attributes: list[str] = field(default_factory=list)
    attribute_failures: list[AttributeFailure] = field(default_factory=list)
    kept: list[Path] = field(default_factory=list)     # raw files kept (--keep-original)


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _file_name(url: str, fallback: str) -> str:
    """The file name a URL ends in, if it is a plain one (no spaces, quotes or the like)."""
    name = Path(urllib.parse.unquote(urllib.parse.urlsplit(url).path)).name
    return name if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", name) else fallback


def manual_commands(name: str, url: str, filename: str) -> str:
    return (f"to do it by hand: curl -L -C - -o {shlex.quote(filename)} {shlex.quote(url)} && "
            f"automod pull {name} --from {shlex.quote(filename)}")


def _attribute_manual(name: str, a: AttributeSource) -> str:
    scales = f" --scales {a.scales}" if a.scales else ""
    return (f"curl -L -o {shlex.quote(a.filename)} {shlex.quote(a.source_url())} && automod attr import "
            f"{shlex.quote(a.filename)} --name {a.name}{scales} -m {name}")


def pull(name: str, url: str | None = None, from_file: str | Path | None = None, keep_original: bool = False,
         force: bool = False, say: Callable[[str], None] = lambda m: None, progress: Progress | None = None,
         retries: int | None = None) -> PullResult:
    """Put the model ``name`` into the cache; see the module docstring. Raises ``UserError`` in one line."""
    cache.check_model_name(name)
    entry = RELEASED.get(name)
    if entry is None and url is None and from_file is None:
        raise UserError(f"'{name}' is not a released model (released: {', '.join(RELEASED)}); for another "
                        "reference checkpoint give --url URL or --from FILE")
    if url is not None and from_file is not None:
        raise UserError("give --url or --from, not both")
    target = cache.cached_model_path(name)
    if target.exists() and not force:
        return PullResult(name, target, already_cached=True)
    kw = {} if retries is None else {"retries": retries}
    try:
        return _pull(name, entry, target, url, from_file, keep_original, say, progress, kw)
    finally:
        folder = cache.downloads_dir() / name
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()  # nothing kept: no empty folder either


def _pull(name, entry, target, url, from_file, keep_original, say, progress, kw) -> PullResult:
    raw, downloaded, origin = _get_checkpoint(name, entry, url, from_file, say, progress, kw)
    try:
        model = _convert_checked(raw, entry, name)
    except UserError as e:
        if downloaded:
            raw.unlink(missing_ok=True)
            discard_partial(raw)
            raise ModelFileError(f"{e}; the file from {origin['url']} was deleted, nothing was added to the "
                                 "cache") from None
        raise
    size = raw.stat().st_size
    model.provenance.update(entry.facts() if entry else {})
    model.provenance["pulled"] = {**origin, "size": size, "sha256": model.provenance.get("source_sha256"),
                                  "date": _now()}
    result = PullResult(name, target, model)
    for a in (entry.attributes if entry else ()):
        _attach(model, name, a, result, say, progress, kw, keep_original)
    model.save(target, overwrite=True)  # atomic: the name appears only now, complete
    model.source_path = target
    if downloaded and not keep_original:
        raw.unlink(missing_ok=True)
    elif downloaded:
        result.kept.append(raw)
    return result


def _get_checkpoint(name: str, entry: ReleasedModel | None, url: str | None, from_file, say, progress, kw):
    """The raw checkpoint on disk: (path, whether automod downloaded it, where it came from)."""
    if from_file is not None:
        path = Path(from_file).expanduser()
        if not path.is_file():
            raise UserError("no such file", path)
        return path, False, {"from_file": str(path.resolve()), "published_at": entry.source_url() if entry else None}
    source = url or entry.source_url()  # type: ignore[union-attr]
    filename = entry.filename if entry else _file_name(source, f"{name}.pth")
    dest = cache.downloads_dir() / name / filename
    if dest.is_file():
        say(f"using {dest}, downloaded earlier")
    try:
        got = download(source, dest, say=say, progress=progress, **kw)
    except DownloadError as e:
        raise DownloadError(e.url, e.reason, e.partial, e.done, e.total,
                            hint=manual_commands(name, source, filename)) from None
    return got.path, True, {"url": source}


def _convert_checked(raw: Path, entry: ReleasedModel | None, name: str) -> Automodulator:
    model = convert_reference_checkpoint(raw)
    if entry is None:
        return model
    prov = model.provenance
    if prov.get("iteration") != entry.iteration or model.config.variant != entry.variant:
        raise ModelFileError(f"not the released {name} checkpoint: it is iteration {prov.get('iteration')} with the "
                             f"{model.config.variant} decoder, the released one is iteration {entry.iteration} with "
                             f"the {entry.variant} decoder", raw)
    return model


def _attach(model: Automodulator, name: str, a: AttributeSource, result: PullResult, say, progress, kw,
            keep_original: bool) -> None:
    dest = cache.downloads_dir() / name / a.filename
    try:
        got = download(a.source_url(), dest, say=say, progress=progress, **kw)
        digest = file_sha256(got.path)
        if a.sha256 and digest != a.sha256:
            got.path.unlink(missing_ok=True)
            raise ModelFileError(f"SHA-256 {digest[:16]}… is not the published file's {a.sha256[:16]}…; deleted",
                                 a.source_url())
        delta = load_reference_attribute(got.path, model.latent_dim)
        if a.scales is not None:
            parse_scales(a.scales, model.n_blocks)
    except UserError as e:
        if not isinstance(e, DownloadError):
            dest.unlink(missing_ok=True)
        result.attribute_failures.append(AttributeFailure(a, str(e), _attribute_manual(name, a)))
        return
    model.set_attribute(a.name, delta, a.scales, {
        "source": "reference attribute direction (AaltoVision/automodulator pioneer/attrib)",
        "file": a.filename, "url": a.source_url(), "sha256": digest, "note": a.note})
    result.attributes.append(a.name)
    if keep_original:
        result.kept.append(got.path)
    else:
        got.path.unlink(missing_ok=True)


def catalog_rows() -> list[dict]:
    """``pull --list``: each released model with its URL, resolution, data and whether it is cached."""
    rows = []
    for m in RELEASED.values():
        path = cache.cached_model_path(m.name)
        rows.append({"name": m.name, "resolution": m.resolution, "variant": m.variant, "trained_on": m.trained_on,
                     "url": m.source_url(), "attributes": [a.name for a in m.attributes],
                     "cached": path.is_file(), "path": str(path)})
    return rows
