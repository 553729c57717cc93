"""Where the metric networks' pretrained weights come from.

Lookup order for each file (under its standard name): ``--weights-dir``, then ``$AUTOMOD_WEIGHTS_DIR``,
then the torch hub cache (``$TORCH_HOME/hub/checkpoints``, default ``~/.cache/torch/hub/checkpoints``).
If none has it, it is downloaded once into the hub cache and its SHA-256 checked; with no network the
lookup fails with one line that names the file, where to put it and where it is published.

A file found on disk is used as it is: its SHA-256 goes into every result together with whether it is
the published file, so a figure computed with other weights is visibly marked.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError, MissingWeightsError
from ..io.atomic import atomic_path

ENV_VAR = "AUTOMOD_WEIGHTS_DIR"
DOWNLOAD_TIMEOUT_S = 30


@dataclass(frozen=True)
class WeightsSpec:
    """A published weights file: its standard name, where it is published and its SHA-256."""

    name: str
    description: str
    filename: str
    url: str
    sha256: str


SPECS: dict[str, WeightsSpec] = {
    spec.name: spec
    for spec in (
        WeightsSpec(
            "inception", "FID Inception-v3 (TF port, pytorch-fid)", "pt_inception-2015-12-05-6726825d.pth",
            "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
            "pt_inception-2015-12-05-6726825d.pth",
            "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2",
        ),
        WeightsSpec(
            "alexnet", "AlexNet backbone of LPIPS (alex, v0.1)", "alexnet-owt-7be5be79.pth",
            "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
            "7be5be791159472b1fbf3c69796f7cb30dca7ad8466c2df70058c37116cdee02",
        ),
        WeightsSpec(
            "vgg16", "VGG16 backbone of LPIPS (vgg, v0.1) used by PPL", "vgg16-397923af.pth",
            "https://download.pytorch.org/models/vgg16-397923af.pth",
            "397923af8e79cdbb6a7127f12361acd7a2f83e06b05044ddf496e83de57a5bf0",
        ),
    )
}


@dataclass(frozen=True)
class WeightsFile:
    """A weights file that was found (or downloaded): where, its hash, and whether it is the published one."""

    name: str
    path: Path
    sha256: str
    published: bool
    source: str  # "--weights-dir", "$AUTOMOD_WEIGHTS_DIR", "torch hub cache" or "downloaded"

    def record(self) -> dict:
        return {"name": self.name, "file": str(self.path), "sha256": self.sha256, "published": self.published,
                "source": self.source}


def hub_checkpoints_dir() -> Path:
    """The torch hub cache folder for checkpoints (honours $TORCH_HOME and $XDG_CACHE_HOME)."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints"


def search_dirs(weights_dir: str | Path | None = None) -> list[tuple[Path, str]]:
    """The folders looked in, in order, with a label saying where each came from."""
    dirs: list[tuple[Path, str]] = []
    if weights_dir:
        dirs.append((Path(weights_dir).expanduser(), "--weights-dir"))
    env = os.environ.get(ENV_VAR)
    if env:
        dirs.append((Path(env).expanduser(), f"${ENV_VAR}"))
    dirs.append((hub_checkpoints_dir(), "torch hub cache"))
    return dirs


_HASH_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file, memoised per (path, size, mtime) within the process."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _HASH_MEMO:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _HASH_MEMO[key] = h.hexdigest()
    return _HASH_MEMO[key]


def spec_for(name: str) -> WeightsSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise ValueError(f"unknown network '{name}' (known: {', '.join(SPECS)})") from None


def locate(name: str, weights_dir: str | Path | None = None) -> WeightsFile | None:
    """The first file under the standard name in the search folders, or None."""
    spec = spec_for(name)
    for folder, label in search_dirs(weights_dir):
        candidate = folder / spec.filename
        if candidate.is_file():
            digest = sha256_file(candidate)
            return WeightsFile(name, candidate, digest, digest == spec.sha256, label)
    return None


def _where_to_put(weights_dir: str | Path | None) -> str:
    return " or ".join(str(folder) for folder, _ in search_dirs(weights_dir))


def download(spec: WeightsSpec, folder: Path, url: str | None = None) -> Path:
    """Download ``spec`` into ``folder`` (atomically), refusing a file whose SHA-256 differs.

    Raises ``OSError`` (``urllib.error.URLError`` included) when there is no network.
    """
    url = url or spec.url
    target = folder / spec.filename
    with atomic_path(target, overwrite=True) as tmp:
        h = hashlib.sha256()
        with open(tmp, "wb") as out, urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as response:
            for chunk in iter(lambda: response.read(1 << 20), b""):
                h.update(chunk)
                out.write(chunk)
        if h.hexdigest() != spec.sha256:
            raise MissingWeightsError(
                f"downloaded file has SHA-256 {h.hexdigest()}, expected {spec.sha256}; not kept (from {url})",
                spec.filename)
    return target


def resolve(name: str, weights_dir: str | Path | None = None, allow_download: bool = True) -> WeightsFile:
    """Find the weights file for ``name`` on disk, else download it; ``MissingWeightsError`` otherwise."""
    spec = spec_for(name)
    found = locate(name, weights_dir)
    if found is not None:
        return found
    reason = "downloads disabled"
    if allow_download:
        try:
            path = download(spec, hub_checkpoints_dir())
            return WeightsFile(name, path, sha256_file(path), True, "downloaded")
        except (OSError, urllib.error.URLError) as e:
            reason = f"download failed: {getattr(e, 'reason', e)}"
    raise MissingWeightsError(
        f"{spec.description} weights not found and not downloadable ({reason}); put the file in "
        f"{_where_to_put(weights_dir)} (published at {spec.url}, sha256 {spec.sha256[:16]}...)",
        spec.filename)


def load_state_dict(weights: WeightsFile) -> dict:
    """Read a weights file safely (tensors only, never arbitrary pickled objects).

    A file that cannot be read (truncated, corrupt, something else under the standard name) is one
    ``InputError`` saying whether it is the published file (by its SHA-256) and where to get that one.
    """
    import torch

    try:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a damaged pickle fails in many ways (KeyError, EOFError, ...)
        first_line = str(e).strip().splitlines()[0] if str(e).strip() else ""
        cause = f"{type(e).__name__}: {first_line}" if first_line else type(e).__name__
        raise InputError(f"not a readable weights file ({cause[:120]}); {_not_published(weights)}",
                         weights.path) from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise InputError(f"not a state dict of tensors; {_not_published(weights)}", weights.path)
    return state


def _not_published(weights: WeightsFile) -> str:
    spec = spec_for(weights.name)
    if weights.published:
        return f"it is the published file (sha256 {spec.sha256[:16]}...), so it was changed after the check"
    return (f"it is not the published file (its sha256 is {weights.sha256[:16]}..., the published file's "
            f"{spec.sha256[:16]}...): delete it and put the published file there, from {spec.url}")


def status(weights_dir: str | Path | None = None) -> list[dict]:
    """One row per network for ``automod weights``: name, status, path, sha256, published."""
    rows = []
    for name, spec in SPECS.items():
        found = locate(name, weights_dir)
        if found is None:
            rows.append({"name": name, "description": spec.description, "status": "missing",
                         "file": spec.filename, "path": None, "sha256": None, "published": None,
                         "url": spec.url, "expected_sha256": spec.sha256})
        else:
            rows.append({"name": name, "description": spec.description,
                         "status": "ok" if found.published else "not the published file",
                         "file": spec.filename, "path": str(found.path), "sha256": found.sha256,
                         "published": found.published, "source": found.source, "url": spec.url,
                         "expected_sha256": spec.sha256})
    return rows
