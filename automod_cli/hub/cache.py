"""The model cache and the one place where ``-m NAME_OR_PATH`` becomes a model file.

Layout: ``$AUTOMOD_HOME`` (default: the platform's user cache folder + ``automod``, e.g.
``~/.cache/automod``, honouring ``$XDG_CACHE_HOME``) holds ``models/NAME.safetensors`` (written
atomically, so a half-made model is never found there) and ``downloads/`` (raw checkpoints and their
``.part`` files while a download is unfinished).

Resolution (``resolve_model``): an existing file wins; otherwise a plain name is looked up in the cache;
the name ``toy64`` falls back to the bundled demo model. No ``-m`` means ``$AUTOMOD_MODEL`` (a path or a
name), else ``toy64``.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..errors import ModelFileError

HOME_ENV = "AUTOMOD_HOME"
MODEL_ENV = "AUTOMOD_MODEL"
BUNDLED_NAME = "toy64"
MODEL_SUFFIX = ".safetensors"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".pkl", ".ckpt", ".bin")


def user_cache_root() -> Path:
    """The platform's per-user cache folder (what ``platformdirs.user_cache_dir`` would give)."""
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches"
    if os.name == "nt":
        local = os.environ.get("LOCALAPPDATA")
        return Path(local) if local else Path.home() / "AppData" / "Local"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"


def home() -> Path:
    env = os.environ.get(HOME_ENV)
    return Path(env).expanduser() if env else user_cache_root() / "automod"


def models_dir() -> Path:
    return home() / "models"


def downloads_dir() -> Path:
    return home() / "downloads"


def is_model_name(text: str) -> bool:
    """A bare name (``ffhq256``), as opposed to a path (``runs/x/model.safetensors``)."""
    return bool(_NAME.match(text)) and not text.lower().endswith(_FILE_SUFFIXES)


def check_model_name(name: str) -> str:
    if not is_model_name(name):
        raise ModelFileError(f"'{name}' is not a model name (letters, digits, '.', '_', '-'; no path, "
                             f"no file suffix)")
    return name


def cached_model_path(name: str) -> Path:
    return models_dir() / f"{check_model_name(name)}{MODEL_SUFFIX}"


def cached_names() -> list[str]:
    folder = models_dir()
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(MODEL_SUFFIX)] for p in folder.glob(f"*{MODEL_SUFFIX}")
                  if p.is_file() and not p.name.startswith("."))


def bundled_model_file() -> Path:
    from ..model import BUNDLED_MODEL_NAME, WEIGHTS_DIR

    return WEIGHTS_DIR / BUNDLED_MODEL_NAME


def is_shipped(path: str | Path) -> bool:
    """True for the bundled model and any file inside the installed package: never rewritten at run time."""
    from .. import __file__ as package_init

    p = Path(path).resolve()
    for folder in (bundled_model_file().parent.resolve(), Path(package_init).resolve().parent):
        if p == folder or folder in p.parents:
            return True
    return False


def resolve_model(spec: str | Path | None) -> Path:
    """The model file ``spec`` names: a path, a cached model's name, or (None) the default model."""
    if spec is None or str(spec) == "":
        env = os.environ.get(MODEL_ENV)
        return resolve_model(env) if env else _named(BUNDLED_NAME)
    text = str(spec)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if is_model_name(text):
        return _named(text)
    if path.is_dir():
        raise ModelFileError("is a folder, not a model file (a training run's model is RUN/model.safetensors)", path)
    raise ModelFileError("no such model file", path)


def _named(name: str) -> Path:
    cached = cached_model_path(name)
    if cached.is_file():
        return cached
    if name == BUNDLED_NAME:
        if bundled_model_file().is_file():
            return bundled_model_file()
        raise ModelFileError(f"the bundled model is missing: {bundled_model_file()} (pass -m MODEL, or pull a "
                             "model: 'automod pull --list')")
    raise ModelFileError(unknown_model_message(name))


def unknown_model_message(name: str) -> str:
    from .catalog import RELEASED

    cached = cached_names()
    have = ", ".join(cached) if cached else "none"
    if name in RELEASED:
        how = f"download it with 'automod pull {name}'"
    else:
        how = f"released models you can pull: {', '.join(RELEASED)} ('automod pull NAME'; 'automod pull --list')"
    return f"unknown model '{name}': no such file, and no cached model of that name in {models_dir()} " \
           f"(cached: {have}); {how}"


def user_copy_path(model_path: str | Path) -> Path:
    """Where a user's editable copy of a shipped model goes: the cache, under the model's name."""
    return cached_model_path(Path(model_path).name[:-len(MODEL_SUFFIX)]
                             if str(model_path).endswith(MODEL_SUFFIX) else Path(model_path).stem)
