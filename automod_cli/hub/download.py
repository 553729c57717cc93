"""Resumable downloads: ``http://``, ``https://`` and ``file://`` into ``DEST.part``, renamed to ``DEST``
only when the whole file is there.

An interrupted transfer (a dropped connection, a timeout, a server error) is resumed from the end of the
``.part`` file with an HTTP Range request, within the same run (up to ``retries`` attempts in a row
that bring no new bytes) or by running the command again. ``DEST.part.json`` remembers the URL and the
total size so that a partial file is never continued from a different file. A server that ignores
Range (200 instead of 206) makes the download start again, and says so.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from .. import __version__
from ..errors import UserError
from ..io.atomic import size_text as _size

CHUNK = 1 << 20
TIMEOUT_S = 30.0
RETRIES = 5
RETRY_WAIT_S = 2.0  # after an attempt that brought nothing; multiplied by the number of such attempts


class Progress(Protocol):
    """What the downloader reports to (the CLI draws a bar from it; the core prints nothing itself)."""

    def start(self, description: str, total: int | None, completed: int) -> None: ...
    def update(self, completed: int) -> None: ...
    def finish(self) -> None: ...


class _Silent:
    def start(self, description, total, completed):
        pass

    def update(self, completed):
        pass

    def finish(self):
        pass


class DownloadError(UserError):
    """A download that could not be completed: the URL, why, and the partial file kept (if any)."""

    def __init__(self, url: str, reason: str, partial: Path | None = None, done: int = 0, total: int | None = None,
                 hint: str = ""):
        self.url, self.reason, self.partial, self.done, self.total = url, reason, partial, done, total
        kept = ""
        if partial is not None and done:
            kept = f"; {_size(done)}{f' of {_size(total)}' if total else ''} kept in {partial}, " \
                   "the same command resumes from there"
        super().__init__(f"cannot download {url}: {reason}{kept}{f'; {hint}' if hint else ''}")


@dataclass(frozen=True)
class Downloaded:
    path: Path
    url: str
    size: int
    resumed: bool       # some of it came from an earlier, interrupted transfer
    reused: bool        # the whole file was already there from an earlier run


class _Dropped(Exception):
    """The connection ended before the announced length."""


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


def _read_meta(dest: Path) -> dict:
    try:
        return json.loads(_meta_path(dest).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_meta(dest: Path, url: str, total: int | None) -> None:
    _meta_path(dest).write_text(json.dumps({"url": url, "total": total}), encoding="utf-8")


def discard_partial(dest: Path) -> None:
    for p in (part_path(dest), _meta_path(dest)):
        p.unlink(missing_ok=True)


def download(url: str, dest: str | Path, say: Callable[[str], None] = lambda m: None,
             progress: Progress | None = None, retries: int = RETRIES, timeout: float = TIMEOUT_S) -> Downloaded:
    """Fetch ``url`` into ``dest`` (resuming ``dest.part``); raise ``DownloadError`` with one line if not."""
    dest = Path(dest)
    progress = progress or _Silent()
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme not in ("http", "https", "file"):
        raise UserError(f"unsupported URL '{url}' (use http://, https:// or file://)")
    if dest.is_file():
        return Downloaded(dest, url, dest.stat().st_size, resumed=False, reused=True)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    meta = _read_meta(dest)
    if part.exists() and meta.get("url") not in (None, url):
        say(f"continuing the partial {dest.name} begun from {meta.get('url')} (only if the sizes agree)")
    total: int | None = meta.get("total") if part.exists() else None
    done = part.stat().st_size if part.exists() else 0
    resumed = False
    fruitless = restarts = 0
    while True:
        before = done
        try:
            if scheme == "file":
                done, total, resumed_now = _copy_file(url, part, done, total, say, progress, dest.name)
            else:
                done, total, resumed_now = _fetch(url, part, dest, done, total, say, progress, timeout)
            resumed = resumed or resumed_now
            progress.finish()
            break
        except _Restart as e:
            progress.finish()
            discard_partial(dest)
            restarts += 1
            if restarts > max(retries, 1):
                raise DownloadError(url, f"{e}; gave up after {restarts} fresh starts") from None
            say(str(e))
            done, total = 0, None
            continue
        except urllib.error.HTTPError as e:
            progress.finish()
            done = part.stat().st_size if part.exists() else 0
            if not (e.code in (408, 429) or e.code >= 500):
                raise DownloadError(url, f"the server refused it (HTTP {e.code} {e.reason})", part, done, total) from None
            reason = f"HTTP {e.code} {e.reason}"
        except (_Dropped, urllib.error.URLError, http.client.HTTPException, OSError) as e:
            progress.finish()
            done = part.stat().st_size if part.exists() else 0
            reason = _reason(e, done, total)
            if done == 0 and _no_network(e):
                raise DownloadError(url, f"{reason} (offline, or the host refuses connections)", part, done, total) from None
        fruitless = 0 if done > before else fruitless + 1
        if fruitless > retries or retries == 0:
            raise DownloadError(url, reason, part, done, total) from None
        say(f"{reason}; retrying ({fruitless}/{retries})" if fruitless else f"{reason}; retrying")
        if fruitless:
            time.sleep(RETRY_WAIT_S * fruitless)
    if total is not None and done != total:  # pragma: no cover - guarded by _fetch
        raise DownloadError(url, f"got {done} bytes, expected {total}", part, done, total)
    os.replace(part, dest)
    _meta_path(dest).unlink(missing_ok=True)
    return Downloaded(dest, url, done, resumed=resumed, reused=False)


class _Restart(Exception):
    """The partial file cannot be continued (the server ignores Range, or the file changed)."""


def _fetch(url, part: Path, dest: Path, done: int, total: int | None, say, progress, timeout):
    headers = {"User-Agent": f"automod/{__version__}", "Accept-Encoding": "identity"}
    if done:
        headers["Range"] = f"bytes={done}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and done and total == done:  # we already have every byte
            return done, total, True
        if e.code == 416 and done:
            raise _Restart(f"the server cannot continue {dest.name} from byte {done}; starting again") from None
        raise
    with response:
        resumed = False
        if done and response.status == 206:
            start, full = _content_range(response.headers.get("Content-Range", ""))
            if start != done or (total is not None and full is not None and full != total):
                raise _Restart(f"the file at {url} is not the one partly downloaded; starting again")
            total = full if full is not None else total
            say(f"resuming {dest.name} from {_size(done)}" + (f" of {_size(total)}" if total else ""))
            resumed, mode = True, "ab"
        else:
            if done:
                say(f"the server does not resume downloads (no Range support); starting {dest.name} again")
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done, mode = 0, "wb"
        _write_meta(dest, url, total)
        progress.start(dest.name, total, done)
        with open(part, mode) as f:
            while True:
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                progress.update(done)
                if total is not None and done > total:
                    raise _Restart(f"the server sent more than the {total} bytes it announced; starting again")
    if total is not None and done < total:
        raise _Dropped(f"connection closed after {_size(done)} of {_size(total)}")
    return done, total, resumed


def _copy_file(url, part: Path, done: int, total: int | None, say, progress, name: str):
    parsed = urllib.parse.urlsplit(url)
    src = Path(urllib.request.url2pathname(parsed.path))
    if parsed.netloc not in ("", "localhost"):
        raise urllib.error.URLError(f"file URLs on other hosts are not supported ({parsed.netloc})")
    if not src.is_file():
        raise DownloadError(url, f"no such file: {src}")
    size = src.stat().st_size
    if done and (done > size or (total is not None and total != size)):
        raise _Restart(f"{src} is not the file partly copied; starting again")
    resumed = bool(done)
    if resumed:
        say(f"resuming {name} from {_size(done)} of {_size(size)}")
    _write_meta(part.with_name(name), url, size)
    progress.start(name, size, done)
    with open(src, "rb") as f_in, open(part, "ab" if done else "wb") as f_out:
        f_in.seek(done)
        while chunk := f_in.read(CHUNK):
            f_out.write(chunk)
            done += len(chunk)
            progress.update(done)
    return done, size, resumed


def _content_range(value: str) -> tuple[int | None, int | None]:
    """'bytes 100-199/1000' -> (100, 1000); unknown parts are None."""
    try:
        unit, rest = value.strip().split(" ", 1)
        span, full = rest.split("/", 1)
        start = int(span.split("-", 1)[0])
        return start, (None if full.strip() == "*" else int(full))
    except ValueError:
        return None, None


def _no_network(e: BaseException) -> bool:
    reason = getattr(e, "reason", e)
    return isinstance(reason, (socket.gaierror, ConnectionRefusedError))


def _reason(e: BaseException, done: int, total: int | None) -> str:
    if isinstance(e, _Dropped):
        return str(e)
    reason = getattr(e, "reason", None) or e
    text = str(reason) or type(reason).__name__
    if isinstance(reason, (TimeoutError, socket.timeout)):
        text = "timed out"
    if done:
        text += f" after {_size(done)}" + (f" of {_size(total)}" if total else "")
    return text
