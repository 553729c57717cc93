"""Test helpers for downloads: small reference-format checkpoints, legacy CUDA-tagged tensor files, and
a loopback HTTP server (127.0.0.1, http.server in a thread) that can drop connections, ignore Range,
or answer with an error page.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from reference_impl import make_reference_checkpoint

from automod_cli.hub import catalog
from automod_cli.hub import download as download_mod
from automod_cli.io.reference import convert_reference_checkpoint
from automod_cli.model import Automodulator


def compact_reference_checkpoint(phase: int = 1, seed: int = 0, iteration: int = 123456,
                                 variant: str = "large") -> dict:
    """``make_reference_checkpoint``'s full layout (every key, shape, dtype and alias of
    ``Session.save_all``), but each tensor a strided view of a few hundred random numbers, so that the
    saved file is small (~100 kB instead of ~370 MB) while the weights are full-size and not constant.
    Aliased keys stay the same tensor object, as in the reference's state dicts."""
    ck = make_reference_checkpoint(variant, phase=phase, seed=seed, iteration=iteration)
    gen = torch.Generator().manual_seed(seed + 1000)
    memo: dict[int, torch.Tensor] = {}

    def compact(t: torch.Tensor) -> torch.Tensor:
        if id(t) not in memo:
            sample = t.detach().flatten()[:4096].float()
            if t.numel() <= 1:
                memo[id(t)] = t.clone()
            elif bool((sample == sample[0]).all()):  # a constant (the robust loss's zeros): one number
                memo[id(t)] = t.flatten()[:1].clone().as_strided(t.shape, (0,) * t.dim())
            else:  # element [i, j, ...] = base[i + j + ...]: full-size, varied, and tiny on disk
                n = sum(s - 1 for s in t.shape) + 1
                base = sample.mean() + sample.std() * torch.randn(n, generator=gen)
                memo[id(t)] = base.to(t.dtype).as_strided(t.shape, (1,) * t.dim())
        return memo[id(t)]

    def walk(x):
        if isinstance(x, torch.Tensor):
            return compact(x)
        if isinstance(x, dict):
            return type(x)((k, walk(v)) for k, v in x.items())
        if isinstance(x, (list, tuple)):
            return type(x)(walk(v) for v in x)
        return x

    return walk(ck)


def checkpoint_bytes(ck: dict) -> bytes:
    buf = io.BytesIO()
    torch.save(ck, buf)
    return buf.getvalue()


def save_legacy_cuda_tensor(t: torch.Tensor, path) -> None:
    """``torch.save(t, path, _use_new_zipfile_serialization=False)`` as the reference saved its attribute
    directions on a GPU: the storage's location tag reads ``cuda:0`` (the reference's files carry exactly
    that tag). A tagger registered for the duration of the call labels the CPU storage so."""
    from torch import serialization

    def tagger(obj):
        return "cuda:0" if getattr(obj, "device", None) is not None and obj.device.type == "cpu" else None

    def deserializer(obj, location):  # never used: loading always maps to the CPU
        return None

    serialization.register_package(-1, tagger, deserializer)
    try:
        torch.save(t, path, _use_new_zipfile_serialization=False)
    finally:
        serialization._package_registry[:] = [e for e in serialization._package_registry if e[1] is not tagger]


@dataclass
class Route:
    body: bytes
    status: int = 200
    content_type: str = "application/octet-stream"
    drop_after: int | None = None    # send at most this many bytes per connection, then close it
    honour_range: bool = True


@dataclass
class Loopback:
    server: http.server.ThreadingHTTPServer
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, dict]] = field(default_factory=list)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def ranges(self, path: str) -> list[str | None]:
        """The Range header of every request for ``path`` (None where there was none), in order."""
        return [h.get("Range") for p, h in self.requests if p == path]


def start_loopback() -> Loopback:
    state = Loopback(server=None)  # type: ignore[arg-type]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):  # quiet
            pass

        def do_GET(self):
            state.requests.append((self.path, dict(self.headers)))
            route = state.routes.get(self.path)
            if route is None or route.status != 200:
                page = b"<html><body><h1>Not found</h1></body></html>"
                self.send_response(404 if route is None else route.status)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return
            body, start = route.body, 0
            wanted = self.headers.get("Range")
            if wanted and route.honour_range and wanted.startswith("bytes=") and wanted.endswith("-"):
                start = int(wanted[len("bytes="):-1])
                if start >= len(body):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Type", route.content_type)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            payload = body[start:]
            if route.drop_after is not None:
                payload = payload[:route.drop_after]
            self.wfile.write(payload)
            self.wfile.flush()
            self.close_connection = True

    state.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.server.daemon_threads = True
    threading.Thread(target=state.server.serve_forever, daemon=True).start()
    return state


def closed_port_url(path: str = "/x.pth") -> str:
    """A loopback URL nothing listens on: connecting is refused, as when offline."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


# --- fixtures shared by the download tests ------------------------------------------------------------

ITERATION = 123456
CKPT_PATH = f"/files/{ITERATION}_state.pth"
ATTR_PATH = "/attrib/smile_delta_tiny"


@pytest.fixture(scope="module")
def served():
    """The server, a phase-1 (8²) checkpoint's bytes, and an attribute direction saved as the reference saved
    its own (legacy torch.save, CUDA location tag)."""
    ck_bytes = checkpoint_bytes(compact_reference_checkpoint(phase=1, seed=3, iteration=ITERATION))
    direction = torch.randn(1, 512, generator=torch.Generator().manual_seed(5)) * 0.05
    buf = io.BytesIO()
    save_legacy_cuda_tensor(direction, buf)
    attr_bytes = buf.getvalue()
    server = start_loopback()
    yield server, ck_bytes, direction, attr_bytes
    server.server.shutdown()


@pytest.fixture
def tiny_release(served, monkeypatch):
    """A catalog entry like the released ones ('tiny8', 8², with a smile direction), at the loopback server."""
    server, ck_bytes, direction, attr_bytes = served
    server.routes.clear()
    server.requests.clear()
    server.routes[CKPT_PATH] = Route(ck_bytes)
    server.routes[ATTR_PATH] = Route(attr_bytes)
    entry = catalog.ReleasedModel(
        "tiny8", ITERATION, "large", 8, "test faces (a loopback fixture)", "faces", "ffhq", "none",
        (catalog.AttributeSource("smile", "smile_delta_tiny", "8", hashlib.sha256(attr_bytes).hexdigest(),
                                 "a test direction", url=server.url(ATTR_PATH)),),
        url=server.url(CKPT_PATH))
    monkeypatch.setitem(catalog.RELEASED, "tiny8", entry)
    monkeypatch.setattr(download_mod, "RETRY_WAIT_S", 0.0)  # no sleeping in tests
    return server, entry


@pytest.fixture(scope="module")
def direct_model(served, tmp_path_factory) -> Automodulator:
    """The same checkpoint converted directly (automod convert's path), for comparison."""
    path = tmp_path_factory.mktemp("direct") / f"{ITERATION}_state.pth"
    path.write_bytes(served[1])
    return convert_reference_checkpoint(path)


def cached(home: Path, name: str = "tiny8") -> Path:
    return home / "models" / f"{name}.safetensors"
