"""LPIPS (face crop, parity with the lpips package) and PPL (slerp, percentile filter, known decoders).

Backbones have random weights saved under their standard names (features only, to keep files small).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from automod_cli.cli.app import main as cli
from automod_cli.metrics.lpips import LPIPSDistance, face_crop
from automod_cli.metrics.ppl import perceptual_path_length, percentile_filter, slerp


@pytest.fixture(scope="module")
def backbone_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("weights")
    torch.manual_seed(0)
    alex = torchvision.models.alexnet().features.state_dict()
    torch.save({f"features.{k}": v for k, v in alex.items()}, folder / "alexnet-owt-7be5be79.pth")
    vgg = torchvision.models.vgg16().features.state_dict()
    torch.save({f"features.{k}": v for k, v in vgg.items()}, folder / "vgg16-397923af.pth")
    return folder


@pytest.fixture
def env(backbone_dir, monkeypatch, tmp_path):
    monkeypatch.setenv("AUTOMOD_WEIGHTS_DIR", str(backbone_dir))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    monkeypatch.setenv("AUTOMOD_RESULTS", str(tmp_path / "results.jsonl"))
    return backbone_dir


@pytest.fixture(scope="module")
def alex_distance(backbone_dir):
    from automod_cli.metrics.weights import WeightsFile, sha256_file

    path = backbone_dir / "alexnet-owt-7be5be79.pth"
    return LPIPSDistance("alex", weights=WeightsFile("alexnet", path, sha256_file(path), False, "test"))


def test_face_crop_is_rows_3_8_to_7_8_and_columns_1_4_to_3_4():
    h = w = 64
    rows = torch.arange(h).view(1, 1, h, 1).expand(2, 3, h, w)
    cols = torch.arange(w).view(1, 1, 1, w).expand(2, 3, h, w)
    r, c = face_crop(rows), face_crop(cols)
    assert r.shape == (2, 3, 32, 32)
    assert r[0, 0, :, 0].tolist() == list(range(24, 56))  # 3/8 .. 7/8 of 64
    assert c[0, 0, 0, :].tolist() == list(range(16, 48))  # 1/4 .. 3/4 of 64
    assert face_crop(torch.zeros(1, 3, 256, 256)).shape[-2:] == (128, 128)


def test_lpips_identical_is_zero_and_matches_the_package(alex_distance, backbone_dir, monkeypatch):
    import lpips as lpips_pkg

    g = torch.Generator().manual_seed(1)
    a = torch.rand(3, 3, 48, 48, generator=g) * 2 - 1
    b = (a + 0.3 * torch.randn(3, 3, 48, 48, generator=g)).clamp(-1, 1)
    assert alex_distance(a, a).abs().max().item() == 0.0
    ours = alex_distance(a, b)
    assert (ours > 0).all()

    # The package on its own, its torchvision AlexNet given the same weights file.
    features = torch.load(backbone_dir / "alexnet-owt-7be5be79.pth", weights_only=True)
    build_alexnet = torchvision.models.alexnet

    def alexnet_with_file_weights(*args, **kwargs):
        model = build_alexnet()
        model.features.load_state_dict({k[len("features."):]: v for k, v in features.items()})
        return model

    monkeypatch.setattr(lpips_pkg.pretrained_networks.tv, "alexnet", alexnet_with_file_weights)
    reference = lpips_pkg.LPIPS(net="alex", version="0.1", verbose=False)
    with torch.no_grad():
        expected = reference(a, b).flatten()
    torch.testing.assert_close(ours, expected, atol=1e-6, rtol=1e-5)


def test_lpips_rejects_a_wrong_backbone_file(tmp_path):
    from automod_cli.errors import InputError
    from automod_cli.metrics.weights import WeightsFile

    path = tmp_path / "alexnet-owt-7be5be79.pth"
    torch.save({"features.0.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(InputError, match="features.0.weight"):
        LPIPSDistance("alex", weights=WeightsFile("alexnet", path, "0", False, "test"))


def write_pairs(root: Path) -> tuple[Path, Path]:
    a, b = root / "a", root / "b"
    a.mkdir()
    b.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(img).save(a / f"{i}.png")
        noisy = np.clip(img.astype(int) + rng.integers(-40, 40, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(b / f"{i}.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(a / "lonely.png")
    Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(a / "small.png")
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(b / "small.png")
    return a, b


def test_lpips_cli_paired_folders(env, tmp_path, capsys, alex_distance):
    from automod_cli.io.images import read_image

    a, b = write_pairs(tmp_path)
    code = cli(["lpips", str(a), str(b), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # the unpaired and mismatched images are listed and make the exit non-zero
    assert "lonely" in captured.err and "small.png" in captured.err and "2 images skipped" in captured.err
    record = json.loads(captured.out)
    expected = torch.cat([alex_distance(read_image(a / f"{i}.png")[None], read_image(b / f"{i}.png")[None])
                          for i in range(3)]).mean().item()
    assert record["variant"] == "lpips_alex_nocrop" and record["n"] == 3
    assert record["value"] == pytest.approx(expected, rel=1e-5)
    assert record["weights"][0]["name"] == "alexnet" and record["weights"][0]["published"] is False

    same = tmp_path / "same"
    same.mkdir()
    for i in range(3):
        (same / f"{i}.png").write_bytes((a / f"{i}.png").read_bytes())
    assert cli(["lpips", str(same), str(same), "--json", "--no-record"]) == 0
    assert json.loads(capsys.readouterr().out)["value"] == 0.0
    # The face crop of a 32 px image (16 px) is too small for AlexNet: one clear line.
    assert cli(["lpips", str(same), str(same), "--crop", "face", "--no-record"]) == 2
    assert "too small for LPIPS alex" in capsys.readouterr().err


def test_lpips_cli_model_reconstructions(env, model_file, image_dir, capsys, tmp_path):
    # The tiny model is 32 px, so its face crop would be too small for AlexNet.
    assert cli(["lpips", "-m", str(model_file), "--data", str(image_dir), "--json", "--crop", "none"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["variant"] == "lpips_alex_nocrop" and record["n"] == 6
    assert record["value"] > 0 and np.isfinite(record["value"])
    assert record["model"]["sha256"] and record["data"]["data"]["content_sha256"]
    assert cli(["lpips", "-m", str(model_file), "--data", str(image_dir), "--n", "9"]) == 2
    assert "only 6 images" in capsys.readouterr().err


# --- PPL ---------------------------------------------------------------------------------------------

def test_slerp_on_known_values():
    a, b = torch.tensor([[1.0, 0, 0]]), torch.tensor([[0.0, 2.0, 0]])  # b is normalised first
    torch.testing.assert_close(slerp(a, b, 0.5), torch.tensor([[2 ** -0.5, 2 ** -0.5, 0]]))
    torch.testing.assert_close(slerp(a, b, torch.tensor([1 / 3])), torch.tensor([[3 ** 0.5 / 2, 0.5, 0]]))
    torch.testing.assert_close(slerp(a, b, 0.0), a)
    torch.testing.assert_close(slerp(a, b, 1.0), torch.tensor([[0.0, 1.0, 0]]))
    z = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(0)), dim=1)
    w = torch.nn.functional.normalize(torch.randn(5, 16, generator=torch.Generator().manual_seed(1)), dim=1)
    mid = slerp(z, w, torch.full((5,), 0.25))
    torch.testing.assert_close(mid.norm(dim=1), torch.ones(5))
    # a quarter of the angle from z, three quarters from w
    angle = torch.acos((z * w).sum(1))
    torch.testing.assert_close(torch.acos((mid * z).sum(1).clamp(-1, 1)), angle / 4, atol=1e-5, rtol=1e-4)


def test_percentile_filter_on_known_values():
    values = np.arange(101.0)  # P1 = 1, P99 = 99
    kept = percentile_filter(values)
    assert kept.min() == 1 and kept.max() == 99 and len(kept) == 99
    values = np.array([5.0] * 199 + [1000.0, -50.0])  # P1 and P99 fall on the 5s: outliers dropped
    assert percentile_filter(values).tolist() == [5.0] * 199
    # With 100 values P1 ('lower') is the minimum itself, so nothing is dropped below.
    assert percentile_filter(np.arange(100.0)).min() == 0


def make_decoder(roughness: float, dim: int = 8, size: int = 64):
    g = torch.Generator().manual_seed(0)
    proj = torch.randn(dim, 3 * size * size, generator=g)

    def decode(z):
        return torch.tanh(torch.sin(roughness * z @ proj)).view(-1, 3, size, size)

    return decode


def test_ppl_is_zero_when_the_decoder_ignores_the_code(alex_distance):
    constant = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    result = perceptual_path_length(lambda z: constant.expand(len(z), -1, -1, -1), alex_distance, n=8, dim=8,
                                    batch_size=4)
    assert result.value == 0.0 and result.n == 8


def test_ppl_grows_when_the_decoder_is_rougher(alex_distance):
    values = [perceptual_path_length(make_decoder(k), alex_distance, n=16, dim=8, batch_size=8, seed=3).value
              for k in (1.0, 4.0, 16.0)]
    assert 0 < values[0] < values[1] < values[2]
    end = perceptual_path_length(make_decoder(4.0), alex_distance, n=16, dim=8, sampling="end", crop=False)
    assert end.variant == "ppl_zend_nocrop" and end.value > 0


def test_ppl_cli_decoder_that_ignores_the_code_gives_zero(env, tiny_model, tmp_path, capsys):
    with torch.no_grad():
        for name, module in tiny_model.decoder.named_modules():
            if name.endswith("style") and isinstance(module, torch.nn.Linear):
                module.weight.zero_()  # AdaIN no longer sees the code
    path = tmp_path / "flat.safetensors"
    tiny_model.save(path)
    assert cli(["ppl", "-m", str(path), "--n", "4", "-b", "4", "--json"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["value"] == 0.0 and record["variant"] == "ppl_zfull_crop" and record["n"] == 4
    assert record["weights"][0]["name"] == "vgg16"


def test_ppl_cli_on_a_model(env, model_file, capsys):
    assert cli(["ppl", "-m", str(model_file), "--n", "4", "-b", "4", "--net", "alex", "--no-crop"]) == 0
    out = capsys.readouterr().out
    assert "PPL" in out and "ppl_zfull_nocrop_alex" in out
