"""automod pull: a released-model catalog entry served by a loopback HTTP server (127.0.0.1) with a
small reference-format checkpoint, resumed downloads, wrong files, offline, and model names."""

from __future__ import annotations

import hashlib
import io
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import run_cli  # noqa: E402
from hub_helpers import (ATTR_PATH, CKPT_PATH, ITERATION, Route, cached, closed_port_url,  # noqa: E402,F401
                         direct_model, served, tiny_release)

from automod_cli.model import Automodulator  # noqa: E402

def error_lines(err: str) -> list[str]:
    """What automod printed as messages (the progress bar's last state is drawn on stderr too)."""
    return [line for line in err.strip().splitlines() if line.startswith("automod:")]


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


def tensors_of(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


def test_pull_then_the_name_gives_the_codes_of_a_direct_conversion(tiny_release, direct_model, automod_home,
                                                                    image_dir, tmp_path, capsys):
    server, entry = tiny_release
    assert run_cli("pull", "tiny8") == 0
    err = capsys.readouterr().err
    assert f"pulled tiny8: {cached(automod_home)}" in err and "attributes: smile" in err
    # -m NAME: the same codes as the directly converted checkpoint.
    lat = tmp_path / "codes.safetensors"
    assert run_cli("encode", image_dir, "-m", "tiny8", "-o", lat) == 0
    codes = tensors_of(lat)["codes"]
    from automod_cli.pipeline import read_inputs
    expected = direct_model.encode(read_inputs([image_dir], 8).images)
    assert torch.equal(codes, expected)
    # Provenance: where it came from, its size, hash and date; what it was trained on.
    model = Automodulator.load(cached(automod_home))
    pulled = model.provenance["pulled"]
    assert pulled["url"] == server.url(CKPT_PATH) and pulled["size"] == len(server.routes[CKPT_PATH].body)
    assert pulled["sha256"] == hashlib.sha256(server.routes[CKPT_PATH].body).hexdigest()
    assert pulled["date"][:2] == "20" and model.provenance["trained_on"] == entry.trained_on
    # The reference's direction, exactly, at its scales.
    assert torch.equal(model.attributes["smile"].delta, direct_direction(tiny_release))
    assert model.attributes["smile"].scales == "8"
    # The raw files are gone; nothing half-made anywhere.
    assert files_under(automod_home / "downloads") == []
    assert files_under(automod_home / "models") == [cached(automod_home)]
    # Pulling again does nothing; --list says it is cached.
    assert run_cli("pull", "tiny8") == 0
    assert "cached already" in capsys.readouterr().err
    assert run_cli("pull", "--list") == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("tiny8"))
    assert "8²" in line and " yes " in line and server.url(CKPT_PATH) in line


def direct_direction(tiny_release) -> torch.Tensor:
    server, _ = tiny_release
    return torch.load(io.BytesIO(server.routes[ATTR_PATH].body), weights_only=True, map_location="cpu")[0]


def test_dropped_connections_are_resumed_with_range_requests(tiny_release, direct_model, automod_home, capsys):
    server, _ = tiny_release
    size = len(server.routes[CKPT_PATH].body)
    server.routes[CKPT_PATH].drop_after = size // 3 + 1  # every connection ends a third of the way in
    assert run_cli("pull", "tiny8") == 0
    err = capsys.readouterr().err
    ranges = server.ranges(CKPT_PATH)
    assert ranges[0] is None and len(ranges) == 3
    starts = [int(r[len("bytes="):-1]) for r in ranges[1:]]
    assert starts == [size // 3 + 1, 2 * (size // 3 + 1)]
    assert err.count("resuming") == 2
    assert_same_model(cached(automod_home), direct_model)


def test_failed_download_is_resumed_by_the_next_run(tiny_release, direct_model, automod_home, capsys):
    server, _ = tiny_release
    size = len(server.routes[CKPT_PATH].body)
    server.routes[CKPT_PATH].drop_after = size // 2
    assert run_cli("pull", "tiny8", "--retries", "0") == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "Traceback" not in err[0]
    assert server.url(CKPT_PATH) in err[0] and "the same command resumes" in err[0]
    part = automod_home / "downloads" / "tiny8" / f"{ITERATION}_state.pth.part"
    assert part.stat().st_size == size // 2
    assert not cached(automod_home).exists()
    server.routes[CKPT_PATH].drop_after = None
    assert run_cli("pull", "tiny8") == 0
    assert "resuming" in capsys.readouterr().err
    assert server.ranges(CKPT_PATH)[-1] == f"bytes={size // 2}-"
    assert_same_model(cached(automod_home), direct_model)
    assert files_under(automod_home / "downloads") == []


def test_a_server_without_range_support_restarts_the_download(tiny_release, direct_model, automod_home, capsys):
    server, _ = tiny_release
    size = len(server.routes[CKPT_PATH].body)
    server.routes[CKPT_PATH].drop_after = size // 2
    assert run_cli("pull", "tiny8", "--retries", "0") == 2
    server.routes[CKPT_PATH] = Route(server.routes[CKPT_PATH].body, honour_range=False)
    capsys.readouterr()
    assert run_cli("pull", "tiny8") == 0
    assert "does not resume downloads" in capsys.readouterr().err
    assert_same_model(cached(automod_home), direct_model)


def assert_same_model(path: Path, direct: Automodulator) -> None:
    got = tensors_of(path)
    for part in ("encoder", "decoder"):
        for k, v in getattr(direct, part).state_dict().items():
            assert torch.equal(got[f"{part}.{k}"], v), k


def html_page(_ck: bytes) -> Route:
    return Route(b"<!DOCTYPE html><html><body>Sorry, the file is not available.</body></html>",
                 content_type="text/html")


def truncated(ck: bytes) -> Route:
    return Route(ck[: len(ck) // 2])  # a server that serves a truncated file with an honest length


def not_a_checkpoint(_ck: bytes) -> Route:
    buf = io.BytesIO()
    torch.save({"state_dict": {"w": torch.zeros(3)}}, buf)
    return Route(buf.getvalue())


def error_404(_ck: bytes) -> Route:
    return Route(b"", status=404)


@pytest.mark.parametrize("make_route, message", [
    (html_page, "not a torch checkpoint"),
    (truncated, "not a torch checkpoint"),
    (not_a_checkpoint, "not a reference automodulator checkpoint"),
    (error_404, "refused it (HTTP 404"),
])
def test_a_wrong_file_leaves_nothing_in_the_cache(make_route, message, tiny_release, automod_home, capsys):
    server, _ = tiny_release
    server.routes[CKPT_PATH] = make_route(server.routes[CKPT_PATH].body)
    assert run_cli("pull", "tiny8") == 2
    out = capsys.readouterr().err
    err = error_lines(out)
    assert len(err) == 1 and "Traceback" not in out, out
    assert message in err[0] and server.url(CKPT_PATH) in err[0]
    assert files_under(automod_home / "models") == []
    assert files_under(automod_home / "downloads") == []
    assert run_cli("encode", "x.png", "-m", "tiny8", "-o", "x.safetensors") == 2
    assert "unknown model 'tiny8'" in capsys.readouterr().err


def test_the_released_name_refuses_another_checkpoint(tiny_release, automod_home, capsys):
    server, _ = tiny_release
    assert run_cli("pull", "ffhq256", "--url", server.url(CKPT_PATH)) == 2
    err = capsys.readouterr().err
    assert "not the released ffhq256 checkpoint" in err and "iteration 123456" in err and "34740000" in err
    assert files_under(automod_home / "models") == [] and files_under(automod_home / "downloads") == []


def test_offline_names_the_url_and_the_manual_commands(tiny_release, automod_home, capsys):
    url = closed_port_url(f"/files/{ITERATION}_state.pth")
    assert run_cli("pull", "tiny8", "--url", url) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1
    assert url in err[0] and "offline" in err[0]
    assert f"curl -L -C - -o {ITERATION}_state.pth {url}" in err[0]
    assert f"automod pull tiny8 --from {ITERATION}_state.pth" in err[0]
    assert files_under(automod_home / "models") == []


def test_from_file_url_and_keep_original(tiny_release, direct_model, automod_home, tmp_path, capsys):
    server, _ = tiny_release
    mine = tmp_path / "mine.pth"
    mine.write_bytes(server.routes[CKPT_PATH].body)
    assert run_cli("pull", "tiny8", "--from", mine) == 0
    assert mine.read_bytes() == server.routes[CKPT_PATH].body  # the user's file is theirs: kept, unchanged
    assert_same_model(cached(automod_home), direct_model)
    assert Automodulator.load(cached(automod_home)).provenance["pulled"]["from_file"] == str(mine.resolve())
    # file:// URLs, and --keep-original keeps the raw files in downloads/.
    assert run_cli("pull", "tiny8", "--url", mine.as_uri(), "--force", "--keep-original") == 0
    kept = automod_home / "downloads" / "tiny8" / f"{ITERATION}_state.pth"
    assert kept.read_bytes() == mine.read_bytes()
    assert f"kept {kept}" in capsys.readouterr().err
    # A name that is not released needs --url or --from; then it is anyone's checkpoint.
    assert run_cli("pull", "mymodel") == 2
    assert "not a released model" in capsys.readouterr().err
    assert run_cli("pull", "mymodel", "--from", mine) == 0
    assert Automodulator.load(cached(automod_home, "mymodel")).attributes == {}


def test_an_attribute_that_cannot_be_fetched_is_named_with_its_manual_import(tiny_release, automod_home, capsys):
    server, _ = tiny_release
    server.routes[ATTR_PATH] = Route(b"", status=404)
    assert run_cli("pull", "tiny8") == 1
    err = capsys.readouterr().err
    assert "attribute 'smile' not attached" in err and server.url(ATTR_PATH) in err
    assert "automod attr import smile_delta_tiny --name smile --scales 8 -m tiny8" in err
    assert Automodulator.load(cached(automod_home)).attributes == {}  # the model itself is cached


def test_an_attribute_file_that_is_not_the_published_one_is_refused(tiny_release, automod_home, capsys):
    server, _ = tiny_release
    buf = io.BytesIO()
    torch.save(torch.zeros(1, 512), buf, _use_new_zipfile_serialization=False)
    server.routes[ATTR_PATH] = Route(buf.getvalue())
    assert run_cli("pull", "tiny8") == 1
    assert "not the published file" in capsys.readouterr().err
    assert files_under(automod_home / "downloads") == []


def test_converting_a_released_file_under_its_name_records_its_training_data(tiny_release, tmp_path, capsys):
    server, entry = tiny_release
    released = tmp_path / entry.filename
    released.write_bytes(server.routes[CKPT_PATH].body)
    renamed = tmp_path / "something.pth"
    renamed.write_bytes(server.routes[CKPT_PATH].body)
    assert run_cli("convert", released, "-o", tmp_path / "a.safetensors") == 0
    assert run_cli("convert", renamed, "-o", tmp_path / "b.safetensors") == 0
    capsys.readouterr()
    assert run_cli("info", tmp_path / "a.safetensors") == 0
    assert f"trained on  {entry.trained_on}" in capsys.readouterr().out
    assert run_cli("info", tmp_path / "b.safetensors") == 0
    assert "trained on  not recorded" in capsys.readouterr().out
