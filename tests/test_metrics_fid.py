"""FID: Fréchet distance on known Gaussians, parity with pytorch-fid 0.3.0, caching, bad inputs.

The Inception weights are random, but their BatchNorm statistics are re-estimated on real photos
(scikit-image's samples) so that different image sets get clearly different features.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from automod_cli.cli.app import main as cli
from automod_cli.errors import InputError, UserError
from automod_cli.metrics import fid as core
from automod_cli.metrics.inception import FIDInception, load_fid_inception, resize_for_inception

INCEPTION_FILE = "pt_inception-2015-12-05-6726825d.pth"


# --- helpers -----------------------------------------------------------------------------------------

def sample_photos() -> list[np.ndarray]:
    import skimage.data as skd

    photos = []
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        a = getattr(skd, name)()
        photos.append(np.stack([a] * 3, -1) if a.ndim == 2 else a[..., :3])
    return photos


def bn_estimated_inception_state() -> dict:
    """Random Inception weights with BatchNorm statistics measured on real photos and crops of them."""
    torch.manual_seed(0)
    net = FIDInception()
    crops = []
    for p in sample_photos():
        h, w = p.shape[:2]
        crops += [p, p[: h // 2, : w // 2], p[h // 3:, w // 4:]]
    x = torch.cat([resize_for_inception(torch.from_numpy(np.ascontiguousarray(c)).permute(2, 0, 1)[None])
                   for c in crops])
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the batch
            m.reset_running_stats()
    net.train()
    with torch.no_grad():
        net(x)
    return {k: v for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}


def write_image_set(folder: Path, n: int, seed: int, darker: bool) -> Path:
    """Crops of the sample photos, mixed sizes, alternating PNG and JPEG."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    for i in range(n):
        p = photos[(i + seed) % len(photos)]
        h, w = p.shape[:2]
        y, x = int(rng.integers(0, h // 3)), int(rng.integers(0, w // 3))
        c = p[y:y + int(rng.integers(h // 3, 2 * h // 3)), x:x + int(rng.integers(w // 3, 2 * w // 3))]
        if darker:
            c = (c.astype(np.float64) * 0.6).astype(np.uint8)[::-1]
        im = Image.fromarray(np.ascontiguousarray(c)).resize((int(rng.integers(40, 110)), int(rng.integers(40, 110))))
        im.save(folder / f"{i:03d}.{'png' if i % 2 else 'jpg'}")
    return folder


@pytest.fixture(scope="module")
def fid_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("fid")
    weights_dir = root / "weights"
    weights_dir.mkdir()
    state = bn_estimated_inception_state()
    torch.save(state, weights_dir / INCEPTION_FILE)
    return {"root": root, "weights": weights_dir, "state": state,
            "A": write_image_set(root / "A", 10, 0, darker=False),
            "B": write_image_set(root / "B", 10, 1, darker=True)}


@pytest.fixture
def env(fid_env, monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOMOD_WEIGHTS_DIR", str(fid_env["weights"]))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("AUTOMOD_RESULTS", str(tmp_path / "results.jsonl"))
    monkeypatch.setenv("AUTOMOD_CACHE_DIR", str(tmp_path / "cache"))
    return fid_env


def json_result(capsys) -> dict:
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1, out
    return json.loads(out[0])


# --- Fréchet distance --------------------------------------------------------------------------------

def rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_frechet_distance_commuting_gaussians_closed_form():
    q = rotation(6, 0)
    a, b = np.array([1.0, 2, 3, 4, 5, 6]), np.array([0.5, 2, 7, 1, 5, 0.1])
    mu1, mu2 = np.arange(6.0), np.arange(6.0)[::-1] * 0.3
    s1, s2 = q @ np.diag(a) @ q.T, q @ np.diag(b) @ q.T
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    r = core.frechet_distance(mu1, s1, mu2, s2)
    assert r.value == pytest.approx(expected, abs=1e-10)
    assert r.trace_sqrt_scipy == pytest.approx(np.sum(np.sqrt(a * b)), abs=1e-10)
    assert r.trace_sqrt_eigen == pytest.approx(np.sum(np.sqrt(a * b)), abs=1e-10)


def test_frechet_distance_non_commuting_2x2_closed_form():
    # For a 2x2 matrix M with positive eigenvalues, (tr sqrt M)^2 = tr M + 2 sqrt(det M).
    s1 = np.array([[2.0, 0.7], [0.7, 1.0]])
    s2 = np.array([[0.5, -0.2], [-0.2, 3.0]])
    m = s1 @ s2
    tr_sqrt = np.sqrt(np.trace(m) + 2 * np.sqrt(np.linalg.det(m)))
    mu1, mu2 = np.array([0.1, -0.3]), np.array([1.0, 2.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
    assert core.frechet_distance(mu1, s1, mu2, s2).value == pytest.approx(expected, abs=1e-12)


def test_frechet_distance_agrees_with_pytorch_fid_on_random_gaussians():
    from pytorch_fid.fid_score import calculate_frechet_distance

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(200, 32)), rng.normal(size=(300, 32)) @ rng.normal(size=(32, 32)) * 0.3 + 0.2
    stats = [(v.mean(0), np.cov(v, rowvar=False)) for v in (x, y)]
    ours = core.frechet_distance(*stats[0], *stats[1]).value
    assert ours == pytest.approx(calculate_frechet_distance(*stats[0], *stats[1]), abs=1e-9)
    assert abs(core.frechet_distance(*stats[0], *stats[0]).value) < 1e-9


def test_frechet_distance_fails_loudly():
    eye = np.eye(3)
    with pytest.raises(InputError, match="non-finite"):
        core.frechet_distance(np.array([0, np.nan, 0]), eye, np.zeros(3), eye)
    with pytest.raises(InputError, match="wrong shape"):
        core.frechet_distance(np.zeros(3), np.eye(2), np.zeros(3), eye)
    # An indefinite "covariance" gives a square root with a large imaginary part.
    with pytest.raises(UserError, match="imaginary"):
        core.frechet_distance(np.zeros(3), np.diag([1.0, -4.0, 1.0]), np.zeros(3), eye)


def test_frechet_cross_check_disagreement_is_an_error(monkeypatch):
    monkeypatch.setattr(core, "_trace_sqrt_eigen", lambda s1, s2: 123.0)
    with pytest.raises(UserError, match="disagree"):
        core.frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), 2 * np.eye(3))


def test_running_moments_match_numpy_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(37, 5)) * 3 + 100  # offset: a naive sum-of-squares would lose digits
    m = core.RunningMoments(5)
    for chunk in np.array_split(x, [4, 5, 20]):
        m.add(chunk)
    s = m.stats()
    np.testing.assert_allclose(s.mu, x.mean(0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(s.sigma, np.cov(x, rowvar=False), rtol=0, atol=1e-10)


def test_inception_matches_pytorch_fid_network(fid_env, monkeypatch):
    import pytorch_fid.inception as pfi

    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: fid_env["state"])
    ref = pfi.InceptionV3([3]).eval()
    ours = load_fid_inception(fid_env["state"])
    x = torch.randint(0, 256, (2, 3, 70, 90), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = ours(x), ref(x.float() / 255)[0].flatten(1)
    # fp32 summation order differs between CPUs' kernels: an AVX2-only EPYC (Zen 3) gave one feature of
    # 4,096 at 1.8e-5 from pytorch-fid's (unseeded input then); a wrong layer moves them all by far more.
    torch.testing.assert_close(a, b, atol=5e-5, rtol=1e-4)
    assert a.std(0).mean() > 1e-3  # the BN statistics make features depend on the image


def test_load_fid_inception_rejects_other_state_dicts():
    with pytest.raises(InputError, match="not an FID Inception"):
        load_fid_inception({"conv.weight": torch.zeros(1)}, source="x.pth")


# --- the whole pipeline against pytorch-fid ---------------------------------------------------------

def test_fid_of_two_folders_agrees_with_pytorch_fid_and_self_fid_is_zero(env, capsys, monkeypatch, tmp_path):
    import pytorch_fid.fid_score as pfs
    import pytorch_fid.inception as pfi

    # pytorch-fid with the same weights; batch size 1 because its loader cannot batch mixed sizes.
    monkeypatch.setattr(pfi, "load_state_dict_from_url", lambda *a, **k: env["state"])
    ref_mu = {}
    for key in ("A", "B"):
        files = sorted(env[key].glob("*"))
        model = pfi.InceptionV3([3])
        ref_mu[key] = pfs.calculate_activation_statistics(files, model, batch_size=1, device="cpu")
    reference = pfs.calculate_frechet_distance(*ref_mu["A"], *ref_mu["B"])

    assert cli(["fid", str(env["A"]), str(env["B"]), "--json", "--workers", "0", "-b", "4"]) == 0
    record = json_result(capsys)
    assert reference > 1.0  # the two sets really differ under these weights
    assert record["value"] == pytest.approx(reference, abs=1e-3)
    assert record["variant"] == "fid10" and record["n"] == 10
    assert record["weights"][0]["published"] is False
    assert record["data"]["first"]["content_sha256"] and record["data"]["second"]["stats_sha256"]
    cache_files = sorted((tmp_path / "cache" / "fid-stats").glob("*"))
    assert [p.suffix for p in cache_files] == [".npz", ".npz"]  # no temporary files left behind
    cached = core.load_stats(cache_files[0])
    assert cached.n == 10 and cached.key

    # The set against itself, with decoding in a worker process; the cached statistics are reused.
    assert cli(["fid", str(env["A"]), str(env["A"]), "--json", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    self_record = json.loads(captured.out.strip())
    assert abs(self_record["value"]) < 1e-3
    assert "cached statistics" in captured.err
    logged = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [r["value"] for r in logged] == [record["value"], self_record["value"]]


# --- bad inputs --------------------------------------------------------------------------------------

def test_empty_folder(env, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert cli(["fid", str(tmp_path / "empty"), str(env["A"])]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("automod: error:") and "no images found" in err and len(err.splitlines()) == 1


def test_fewer_images_than_n(env, tmp_path, capsys):
    assert cli(["fid", str(env["A"]), "--save-stats", str(tmp_path / "a.npz"), "--n", "12"]) == 2
    err = capsys.readouterr().err
    assert "only 10 images, but --n asks for 12" in err and "--allow-fewer" in err
    assert not (tmp_path / "a.npz").exists()


def test_allow_fewer_and_corrupt_files_are_skipped_and_counted(env, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for src in sorted(env["A"].glob("*"))[:3]:
        (folder / src.name).write_bytes(src.read_bytes())
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    good = sorted(env["A"].glob("*"))[3].read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 3])
    out = tmp_path / "mixed.npz"
    code = cli(["fid", str(folder), "--save-stats", str(out), "--n", "8", "--allow-fewer", "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 1  # results written, but the skipped inputs make the exit status non-zero
    assert "2 images skipped" in err and "broken.png" in err and "truncated.jpg" in err
    stats = core.load_stats(out)
    assert stats.n == 3
    # Without --allow-fewer, 3 readable images for --n 4 is an error.
    assert cli(["fid", str(folder), "--save-stats", str(tmp_path / "x.npz"), "--n", "4", "--workers", "0"]) == 2
    assert "only 3 readable images" in capsys.readouterr().err


def test_stats_files_of_wrong_shape_or_non_finite(env, tmp_path, capsys):
    good = tmp_path / "good.npz"
    core.FIDStats(np.zeros(2048), np.eye(2048), 5).save(good)
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, mu=np.zeros(64), sigma=np.eye(64))
    assert cli(["fid", str(wrong), str(good)]) == 2
    err = capsys.readouterr().err.strip()
    assert "wrong.npz" in err and "wrong shape" in err and len(err.splitlines()) == 1
    nan = tmp_path / "nan.npz"
    mu = np.zeros(2048)
    mu[7] = np.inf
    np.savez(nan, mu=mu, sigma=np.eye(2048))
    assert cli(["fid", str(good), str(nan)]) == 2
    assert "non-finite" in capsys.readouterr().err
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    assert cli(["fid", str(junk), str(good)]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
    with pytest.raises(UserError, match="exists already"):
        core.FIDStats(np.zeros(2048), np.eye(2048), 5).save(good)  # never overwritten silently


def test_zip_archive_gives_the_same_statistics_as_its_folder(env, tmp_path):
    import zipfile

    archive = tmp_path / "a.zip"
    files = sorted(env["A"].glob("*"))[:3]
    with zipfile.ZipFile(archive, "w") as z:
        for f in files:
            z.write(f, f"imgs/{f.name}")
        z.writestr("imgs/bad.png", b"garbage")
    folder = tmp_path / "a3"
    folder.mkdir()
    for f in files:
        (folder / f.name).write_bytes(f.read_bytes())
    ext = core.FeatureExtractor(load_fid_inception(env["state"]), None)
    from_zip = core.set_stats(archive, ext, cache_dir=None, batch_size=2).stats
    from_dir = core.set_stats(folder, ext, cache_dir=None, batch_size=3).stats
    np.testing.assert_allclose(from_zip.mu, from_dir.mu, atol=1e-6)
    np.testing.assert_allclose(from_zip.sigma, from_dir.sigma, atol=1e-6)
    assert [label for label, _ in from_zip.skipped] == [f"{archive}:imgs/bad.png"]


def test_generated_images_are_quantised_round_half_up(env):
    ext = core.FeatureExtractor(load_fid_inception(env["state"]), None)
    g = torch.Generator().manual_seed(0)
    images = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    images[0, 0, 0, 0] = 2 * (10.5 / 255) - 1 + 1e-7  # 10.5000x -> 11 (half up)
    served = []

    def generate(k):  # hands out the next k images
        out = images[len(served):len(served) + k]
        served.extend(range(k))
        return out

    stats = ext.generated_stats(generate, 3, batch_size=2)
    assert len(served) == 3
    expected = ext.features(torch.floor((images + 1) * 127.5 + 0.5).clamp(0, 255))
    np.testing.assert_allclose(stats.mu, expected.mean(0), atol=1e-9)


def test_fid_of_a_model_generated_and_reconstructions(env, capsys, tmp_path):
    """`fid -m MODEL --data DIR` (generated samples) and `--reconstructions`, end to end."""
    from automod_cli.model import Automodulator, ModelConfig

    torch.manual_seed(0)
    model = tmp_path / "tiny.safetensors"
    Automodulator(ModelConfig(resolution=32, width=1 / 16, latent_dim=32)).save(model)
    args = ["fid", "-m", str(model), "--data", str(env["A"]), "--json", "--workers", "0", "-b", "5"]
    assert cli(args + ["--n", "6", "--seed", "1"]) == 0
    generated = json_result(capsys)
    assert generated["n"] == 6 and generated["value"] > 1.0 and generated["model"]["sha256"]
    assert cli(args + ["--n", "6", "--reconstructions"]) == 0
    recon = json_result(capsys)
    assert recon["n"] == 6 and recon["value"] > 0 and recon["variant"] != generated["variant"]


def test_prefetched_keeps_order_and_raises_producer_errors():
    assert list(core.prefetched(iter(range(10)))) == list(range(10))

    def broken():
        yield 1
        raise InputError("bad batch", "x.png")

    got = []
    with pytest.raises(InputError, match="bad batch"):
        for item in core.prefetched(broken()):
            got.append(item)
    assert got == [1]
    # A consumer that stops early does not leave the producer blocked.
    for item in core.prefetched(iter(range(1000)), depth=1):
        if item == 3:
            break
