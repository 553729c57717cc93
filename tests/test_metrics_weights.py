"""Where network weights come from: lookup order, hashes, checked downloads, offline failures."""

from __future__ import annotations

import hashlib
import json
import urllib.error
from dataclasses import replace

import pytest
import torch

from automod_cli.cli.app import main as cli
from automod_cli.errors import InputError, MissingWeightsError
from automod_cli.metrics import weights as W


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No weights anywhere and no network."""
    def no_network(*args, **kwargs):
        raise urllib.error.URLError("no network in this test")

    monkeypatch.setattr(W.urllib.request, "urlopen", no_network)
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("AUTOMOD_RESULTS", str(tmp_path / "results.jsonl"))
    return tmp_path


@pytest.mark.parametrize("name", sorted(W.SPECS))
def test_offline_failure_names_the_file_where_to_put_it_and_where_it_is_published(offline, name):
    spec = W.SPECS[name]
    with pytest.raises(MissingWeightsError) as info:
        W.resolve(name, weights_dir=offline / "mine")
    message = str(info.value)
    assert message.startswith(spec.filename + ":")
    assert str(offline / "mine") in message and str(offline / "torch-home" / "hub" / "checkpoints") in message
    assert spec.url in message and "no network in this test" in message
    assert "\n" not in message
    assert info.value.exit_code == 3


@pytest.mark.parametrize("argv", [["fid", "a", "b"], ["lpips", "a", "b"], ["ppl", "--n", "2"]])
def test_offline_failure_through_the_cli_is_one_line_and_exit_3(offline, capsys, argv):
    assert cli(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("automod: error: ") and "published at https://" in err[0]


def test_lookup_order_and_hashes(offline, monkeypatch):
    explicit, env, hub = offline / "explicit", offline / "env", offline / "torch-home" / "hub" / "checkpoints"
    for folder, payload in ((explicit, b"one"), (env, b"two"), (hub, b"three")):
        folder.mkdir(parents=True)
        (folder / W.SPECS["alexnet"].filename).write_bytes(payload)
    monkeypatch.setenv(W.ENV_VAR, str(env))
    found = W.resolve("alexnet", explicit)
    assert (found.path.parent, found.source) == (explicit, "--weights-dir")
    assert found.sha256 == hashlib.sha256(b"one").hexdigest() and found.published is False
    assert W.resolve("alexnet").path.parent == env
    monkeypatch.delenv(W.ENV_VAR)
    assert W.resolve("alexnet").source == "torch hub cache"


def test_download_is_checked_and_atomic(offline, monkeypatch):
    monkeypatch.undo()  # real urllib again; the source is a local file:// URL
    monkeypatch.setenv("TORCH_HOME", str(offline / "torch-home"))
    monkeypatch.delenv(W.ENV_VAR, raising=False)
    payload = b"pretend weights"
    source = offline / "published.pth"
    source.write_bytes(payload)
    good = replace(W.SPECS["vgg16"], url=source.as_uri(), sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setitem(W.SPECS, "vgg16", good)
    got = W.resolve("vgg16")
    assert got.source == "downloaded" and got.published and got.path.read_bytes() == payload

    got.path.unlink()
    monkeypatch.setitem(W.SPECS, "vgg16", replace(good, sha256="0" * 64))
    with pytest.raises(MissingWeightsError, match="expected 0000"):
        W.resolve("vgg16")
    assert list(got.path.parent.iterdir()) == []  # neither the bad file nor a temporary one is kept


def test_weights_listing(offline, capsys):
    folder = offline / "w"
    folder.mkdir()
    torch.save({"features.0.weight": torch.zeros(1)}, folder / W.SPECS["alexnet"].filename)
    assert cli(["weights", "--weights-dir", str(folder), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["alexnet"]["status"] == "not the published file" and rows["alexnet"]["sha256"]
    assert rows["inception"]["status"] == "missing" and rows["inception"]["path"] is None
    assert cli(["weights", "--weights-dir", str(folder)]) == 0
    assert "not the published file" in capsys.readouterr().out


def test_unreadable_weights_file_is_one_clear_error(offline):
    folder = offline / "w"
    folder.mkdir()
    (folder / W.SPECS["inception"].filename).write_bytes(b"garbage, not a checkpoint")
    found = W.resolve("inception", folder)
    with pytest.raises(InputError, match="not a readable weights file"):
        W.load_state_dict(found)
