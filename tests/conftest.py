"""Shared fixtures: tiny models and small image folders (fast on 2 CPU cores)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

# Under pytest-xdist each worker gets one thread: two workers with two threads each on two cores spin
# against each other and run several times slower.
if os.environ.get("PYTEST_XDIST_WORKER"):
    torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def automod_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty model cache ($AUTOMOD_HOME): the user's ~/.cache is never touched."""
    home = tmp_path_factory.mktemp("automod-home")
    monkeypatch.setenv("AUTOMOD_HOME", str(home))
    monkeypatch.delenv("AUTOMOD_MODEL", raising=False)
    return home


@pytest.fixture
def tiny_config():
    from automod_cli.model import ModelConfig

    return ModelConfig(resolution=32, variant="large", width=1 / 16, latent_dim=64)


@pytest.fixture
def tiny_model(tiny_config):
    from automod_cli.model import Automodulator

    torch.manual_seed(0)
    model = Automodulator(tiny_config)
    # Give noise scales and to_rgb something non-trivial so tests can see their effect.
    with torch.no_grad():
        for name, p in model.decoder.named_parameters():
            if name.endswith("scale"):
                p.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def model_file(tiny_model, tmp_path) -> Path:
    path = tmp_path / "tiny.safetensors"
    tiny_model.save(path)
    return path


@pytest.fixture
def image_dir(tmp_path) -> Path:
    """Six small images of different sizes and modes."""
    from PIL import Image
    import numpy as np

    d = tmp_path / "images"
    d.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        a = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
        Image.fromarray(a, "RGB").save(d / f"face{i}.png")
    Image.fromarray(rng.integers(0, 256, size=(48, 40), dtype=np.uint8), "L").save(d / "gray.jpg")
    Image.fromarray(rng.integers(0, 256, size=(32, 32, 4), dtype=np.uint8), "RGBA").save(d / "alpha.png")
    return d


def run_cli(*args: str) -> int:
    from automod_cli.cli.app import main

    return main([str(a) for a in args])


def assert_pasted_back_around_the_face(path: Path) -> None:
    """``path`` is skimage's astronaut with an edited face pasted back: the photo's size, and only a small
    region changed, around her face (upper middle of the photo)."""
    import numpy as np
    from PIL import Image
    from skimage import data as skimage_data

    pasted = np.asarray(Image.open(path).convert("RGB")).astype(int)
    original = skimage_data.astronaut().astype(int)
    assert pasted.shape == original.shape
    changed = np.abs(pasted - original).sum(-1) > 0
    assert 0.001 < changed.mean() < 0.2
    ys, xs = np.nonzero(changed)
    assert 0 <= ys.mean() < 300 and 100 < xs.mean() < 350


def write_random_images(folder: Path, n: int, size: int, seed: int) -> Path:
    """``n`` random-noise RGB PNGs (00.png, 01.png, …) of ``size``², reproducible by ``seed``."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray((rng.random((size, size, 3)) * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


@pytest.fixture
def one_thread():
    """Tiny models: one thread is faster (and steadier on a busy machine) than several."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
