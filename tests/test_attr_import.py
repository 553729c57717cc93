"""automod attr import (the reference's pickled attribute directions, read without running pickled code),
and attributes never rewriting a model that ships with automod."""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_cli, write_random_images  # noqa: E402
from hub_helpers import save_legacy_cuda_tensor  # noqa: E402

from automod_cli.errors import ModelFileError  # noqa: E402
from automod_cli.io.reference import load_reference_attribute  # noqa: E402
from automod_cli.model import WEIGHTS_DIR, Automodulator  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
BUNDLED = WEIGHTS_DIR / "toy64.safetensors"


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_legacy_cuda_direction_is_read_exactly(tmp_path):
    t = torch.randn(1, 512, generator=torch.Generator().manual_seed(1))
    path = tmp_path / "smile_delta"
    save_legacy_cuda_tensor(t, path)
    raw = path.read_bytes()
    # The reference's format: a legacy (non-zip) pickle whose storage is tagged as on a CUDA device.
    assert not raw.startswith(b"PK") and b"cuda:0" in raw and b"_rebuild_tensor_v2" in raw
    delta = load_reference_attribute(path)
    assert delta.shape == (512,) and delta.dtype == torch.float32 and torch.equal(delta, t[0])


def test_attr_import_stores_the_files_tensor_exactly(model_file, tmp_path, capsys):
    t = torch.randn(1, 64, generator=torch.Generator().manual_seed(2)) * 0.1  # the tiny model's codes are 64-d
    path = tmp_path / "smile_delta2"
    save_legacy_cuda_tensor(t, path)
    assert run_cli("attr", "import", path, "--name", "smile", "--scales", "16", "-m", model_file) == 0
    assert f"added 'smile' to {model_file}" in capsys.readouterr().err
    a = Automodulator.load(model_file).attributes["smile"]
    assert torch.equal(a.delta, t[0]) and a.scales == "16" and a.info["sha256"] == sha(path)
    # Into a separate attribute file instead: the model file stays as it is.
    before = sha(model_file)
    out = tmp_path / "attrs.safetensors"
    assert run_cli("attr", "import", path, "--name", "smile2", "-m", model_file, "--out", out) == 0
    assert sha(model_file) == before
    assert run_cli("attr", "list", "-m", model_file, "--attr-file", out) == 0
    assert "smile2\tscales=all" in capsys.readouterr().out
    # Existing names are kept unless --overwrite.
    assert run_cli("attr", "import", path, "--name", "smile", "-m", model_file) == 2
    assert "exists already" in capsys.readouterr().err


class Payload:
    """Unpickling this would run code (it writes a marker file); a safe reader never does."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.marker)}",))


def legacy_save(obj, path: Path) -> Path:
    torch.save(obj, path, _use_new_zipfile_serialization=False)
    return path


@pytest.mark.parametrize("make, message", [
    (lambda p, m: legacy_save({"delta": torch.zeros(1, 64)}, p), "holds a dict, expected one (1, 64) tensor"),
    (lambda p, m: legacy_save(torch.zeros(1, 100), p), "shape [1, 100], expected a float (1, 64) tensor"),
    (lambda p, m: legacy_save(torch.zeros(1, 64, dtype=torch.int64), p), "a int64 tensor"),
    (lambda p, m: legacy_save(torch.full((1, 64), float("nan")), p), "NaN"),
    (lambda p, m: legacy_save(Payload(str(m)), p), "refused: the file holds Python objects"),
    (lambda p, m: p.write_bytes(pickle.dumps(Payload(str(m)))) and p, "refused: the file holds Python objects"),
    (lambda p, m: p.write_text("<html><body>404</body></html>") and p, "an HTML page"),
])
def test_anything_but_a_direction_is_refused(make, message, model_file, tmp_path, capsys):
    marker = tmp_path / "code-was-run"
    path = tmp_path / "not_a_direction"
    make(path, marker)
    before = sha(model_file)
    assert run_cli("attr", "import", path, "--name", "x", "-m", model_file) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(path) in err[0] and message in err[0], err
    assert not marker.exists()  # the pickle's code never ran
    assert sha(model_file) == before


def test_attr_add_and_import_leave_the_bundled_model_as_shipped(image_dir, automod_home, tmp_path, capsys):
    before = sha(BUNDLED)
    assert run_cli("attr", "add", "noise", "--with", image_dir / "face0.png", "--with", image_dir / "face1.png",
                   "--without", image_dir / "face2.png", "--without", image_dir / "face3.png",
                   "--scales", "16-64") == 0
    err = capsys.readouterr().err
    copy = automod_home / "models" / "toy64.safetensors"
    assert sha(BUNDLED) == before
    assert f"added 'noise' to {copy}" in err and "ships with automod and is never changed" in err
    mine = Automodulator.load(copy)
    assert {"smile", "glasses", "noise"} <= set(mine.attributes)
    assert mine.provenance["copied_from"]["sha256"] == before
    # The name toy64 and the default model are now the copy; the bundled file is still untouched.
    assert run_cli("attr", "list") == 0
    assert "noise\tscales=16-64" in capsys.readouterr().out
    t = torch.randn(1, 512) * 0.1
    save_legacy_cuda_tensor(t, tmp_path / "d")
    assert run_cli("attr", "import", tmp_path / "d", "--name", "imported", "-m", BUNDLED) == 0
    assert sha(BUNDLED) == before
    assert torch.equal(Automodulator.load(copy).attributes["imported"].delta, t[0])


def readme_attr_example() -> list[str]:
    """The README's 'attr add' example (the verbs section), as an argument list."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    line = next(x for x in text.splitlines() if x.startswith("automod attr add "))
    return shlex.split(line.split("#")[0])[1:]


def test_the_readme_attribute_example_changes_no_tracked_file(tmp_path, monkeypatch, capsys):
    args = readme_attr_example()
    folders = [a.rstrip("/") for flag, a in zip(args, args[1:]) if flag in ("--with", "--without")]
    assert len(folders) == 2
    monkeypatch.chdir(tmp_path)
    for k, folder in enumerate(folders):
        write_random_images(tmp_path / folder, 3, 64, seed=k)
    git = shutil.which("git")
    status = None
    if git and (REPO / ".git").exists():
        status = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                                capture_output=True, text=True).stdout
    before = sha(BUNDLED)
    assert run_cli(*args) == 0, capsys.readouterr().err
    assert sha(BUNDLED) == before
    if status is not None:
        after = subprocess.run([git, "status", "--porcelain", "--untracked-files=no"], cwd=REPO,
                               capture_output=True, text=True).stdout
        assert after == status
    assert re.search(r"ships with automod and is never changed", capsys.readouterr().err)


def test_reference_attribute_reader_refuses_a_missing_file(tmp_path):
    with pytest.raises(ModelFileError, match="no such file"):
        load_reference_attribute(tmp_path / "missing")
    buf = io.BytesIO()
    torch.save(torch.zeros(512), buf)  # a plain [512] tensor (zip format) is accepted too
    (tmp_path / "flat").write_bytes(buf.getvalue())
    assert load_reference_attribute(tmp_path / "flat").shape == (512,)
