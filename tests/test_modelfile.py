"""The model file: round trip, metadata, refusal of anything that is not ours."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import save_file

from automod_cli.errors import ModelFileError
from automod_cli.io import modelfile
from automod_cli.model import WEIGHTS_DIR, Automodulator


def test_round_trip_gives_bit_identical_outputs(tiny_model, tmp_path):
    tiny_model.set_attribute("smile", torch.randn(64), scales="16", info={"n_with": 3})
    tiny_model.provenance = {"preset": "test"}
    # Run the encoder in train mode once so u differs from its initial value: it must be saved.
    tiny_model.encoder.train()(torch.rand(2, 3, 32, 32))
    tiny_model.eval()
    path = tiny_model.save(tmp_path / "m.safetensors")
    loaded = Automodulator.load(path)
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    z = tiny_model.encode(x)
    assert torch.equal(z, loaded.encode(x))
    assert torch.equal(tiny_model.decode(z), loaded.decode(z))
    assert torch.equal(loaded.encoder.blocks[1].conv1.u, tiny_model.encoder.blocks[1].conv1.u)
    assert loaded.attributes["smile"].scales == "16" and loaded.attributes["smile"].info == {"n_with": 3}
    assert torch.equal(loaded.attributes["smile"].delta, tiny_model.attributes["smile"].delta)
    assert loaded.provenance == {"preset": "test"} and loaded.config == tiny_model.config


def test_metadata_is_json_and_no_pickle(model_file):
    meta = modelfile.read_metadata(model_file)
    assert meta["format"] == "automod-model" and meta["format_version"] == "1"
    assert json.loads(meta["config"])["resolution"] == 32
    assert b"pickle" not in model_file.read_bytes()[:4096] and model_file.read_bytes()[8:9] == b"{"


def test_not_a_model(tmp_path):
    p = tmp_path / "x.safetensors"
    p.write_text("hello")
    with pytest.raises(ModelFileError, match="not a model file"):
        Automodulator.load(p)
    with pytest.raises(ModelFileError, match="no such"):
        Automodulator.load(tmp_path / "missing.safetensors")
    other = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(other))
    with pytest.raises(ModelFileError, match="not an automod model file"):
        Automodulator.load(other)


def test_other_format_version(model_file, tmp_path):
    tensors, meta = modelfile.read_tensors(model_file)
    meta["format_version"] = "99"
    path = tmp_path / "v99.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match="version 99"):
        Automodulator.load(path)


def test_weights_that_do_not_match_the_config(model_file, tmp_path):
    tensors, meta = modelfile.read_tensors(model_file)
    cfg = json.loads(meta["config"])
    cfg["resolution"] = 64
    meta["config"] = json.dumps(cfg)
    path = tmp_path / "mismatch.safetensors"
    save_file(tensors, str(path), metadata=meta)
    with pytest.raises(ModelFileError, match="missing"):
        Automodulator.load(path)


def test_truncated_file(model_file, tmp_path):
    data = model_file.read_bytes()
    path = tmp_path / "trunc.safetensors"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError):
        Automodulator.load(path)


def test_save_is_atomic_and_respects_overwrite(tiny_model, tmp_path):
    from automod_cli.errors import UserError

    path = tiny_model.save(tmp_path / "m.safetensors")
    with pytest.raises(UserError, match="exists already"):
        tiny_model.save(path, overwrite=False)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temporary left behind


def test_bundled_model_is_the_one_its_manifest_describes():
    """weights/manifest.json and the bundled file must not drift apart when the model is retrained."""
    entry = json.loads((WEIGHTS_DIR / "manifest.json").read_text())["bundled"]["toy64"]
    path = WEIGHTS_DIR / entry["file"]
    assert modelfile.file_sha256(path) == entry["sha256"]
    model = Automodulator.load(path)
    assert model.resolution == 64 and sorted(model.attributes) == sorted(entry["attributes"])
    assert model.provenance["preset"] == "toy64"
