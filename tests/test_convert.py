"""automod convert: reference checkpoints (AaltoVision/automodulator) -> automod model files.

The checkpoints are built here in the reference's on-disk layout (tests/reference_impl.py), with
random weights at full size, and the converted model is compared with an independent functional
re-implementation of the reference networks that reads that layout directly.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reference_impl import make_reference_checkpoint, reference_decode, reference_encode  # noqa: E402

from automod_cli.errors import ModelFileError  # noqa: E402
from automod_cli.io.reference import (automodulator_from_reference, convert_command_core,  # noqa: E402
                                      convert_reference_checkpoint, load_reference_checkpoint)
from automod_cli.model import Automodulator  # noqa: E402

RTOL = 1e-5  # max |ours - reference| / max |reference|


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def unit_codes(n: int, seed: int) -> torch.Tensor:
    return F.normalize(torch.randn(n, 512, generator=torch.Generator().manual_seed(seed)), dim=1)


def images(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def large_file(tmp_path_factory):
    """A released-model-like checkpoint: large decoder, phase 6 (256²)."""
    path = tmp_path_factory.mktemp("ref") / "ffhq256-like.pth"
    make_reference_checkpoint("large", phase=6, seed=1, path=path, iteration=4_000_000)
    yield path, load_reference_checkpoint(path)
    path.unlink()  # ~370 MB; pytest keeps old tmp dirs


@pytest.fixture(scope="module")
def small_file(tmp_path_factory):
    """A small-decoder (CelebA-HQ plan) checkpoint saved at phase 4 (64²)."""
    path = tmp_path_factory.mktemp("ref") / "small64.pth"
    make_reference_checkpoint("small", phase=4, seed=2, path=path, iteration=777)
    yield path, load_reference_checkpoint(path)
    path.unlink()  # ~370 MB; pytest keeps old tmp dirs


@pytest.fixture(scope="module")
def large32(large_file) -> Automodulator:
    return automodulator_from_reference(large_file[1], resolution=32)


@pytest.fixture(scope="module")
def small64(small_file) -> Automodulator:
    return convert_reference_checkpoint(small_file[0])


# --- what the converter reads ----------------------------------------------------------------------

def test_fixture_is_in_the_reference_layout(large_file):
    ck = large_file[1]
    g = ck["G_running_state_dict"]
    assert len(g) == 162 and len({id(v) for v in g.values()}) == 128  # 34 alias keys
    assert g["module.adanorm_blocks.3.mod.weight"] is g["module.progression.2.conv.0.3.mod.weight"]
    assert len(ck["D_state_dict"]) == 54 and len(ck["SNU"]) == 18
    assert isinstance(ck["adaptive_loss_0"], tuple) and len(ck["adaptive_loss_0"]) == 1
    # The training decoder differs from the EMA one, so the parity tests catch reading the wrong one.
    assert not torch.equal(ck["G_state_dict"]["module.to_rgb.3.weight"], g["module.to_rgb.3.weight"])


def test_full_conversion_reads_phase_variant_and_provenance(large_file):
    path, ck = large_file
    m = convert_reference_checkpoint(path)
    assert (m.resolution, m.config.variant, m.n_blocks, m.latent_dim) == (256, "large", 7, 512)
    prov = m.provenance
    assert prov["source_file"] == path.name
    assert prov["source_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (prov["iteration"], prov["phase"], prov["alpha"]) == (4_000_000, 6, 1.0)
    g, snu = ck["G_running_state_dict"], ck["SNU"]
    top = "module.progression.6.conv.1.conv"
    assert torch.equal(m.decoder.blocks[6].conv2.weight, g[top + ".weight_orig"] * g[top + ".weight_gain"])
    assert torch.equal(m.decoder.blocks[6].noise2.scale, g["module.noise.6.1.noise_scale"])
    assert torch.equal(m.decoder.blocks[6].adain1.style.bias, g["module.adanorm_blocks.11.mod.bias"])
    assert torch.equal(m.encoder.blocks[6].conv1.u, snu[4].view(-1))  # progression 2 <-> our block 6
    assert torch.equal(m.encoder.from_rgb[6].weight, ck["D_state_dict"]["module.from_rgb.2.weight"])


def test_small_variant_detected_from_shapes(small64, small_file):
    assert (small64.resolution, small64.config.variant) == (64, "small")
    assert small64.decoder.blocks[4].conv1.weight.shape == (256, 512, 3, 3)
    assert small64.provenance["phase"] == 4


# --- parity with the reference networks ------------------------------------------------------------

def test_decoder_matches_reference_large(large32, large_file):
    z = unit_codes(2, seed=3)
    ours = large32.decode(z, noise=False)
    ref = reference_decode(large_file[1]["G_running_state_dict"], z, phase=3)
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    assert rel_err(ours, ref) < RTOL


def test_decoder_matches_reference_small(small64, small_file):
    z = unit_codes(2, seed=4)
    ours = small64.decode(z, noise=False)
    ref = reference_decode(small_file[1]["G_running_state_dict"], z, phase=4)
    assert ours.shape == ref.shape == (2, 3, 64, 64)
    assert rel_err(ours, ref) < RTOL


def test_per_block_codes_match_reference_scale_mixing(large32, large_file):
    """A [B, n_blocks, D] stack equals the reference's multi-call mixing (block i uses its call's z)."""
    za, zb = unit_codes(2, seed=5), unit_codes(2, seed=6)
    stack = torch.stack([za, za, zb, zb], dim=1)
    ours = large32.decode(stack)
    ref = reference_decode(large_file[1]["G_running_state_dict"], [za, za, zb, zb], phase=3)
    assert rel_err(ours, ref) < RTOL


def test_fade_in_matches_reference(large32, large_file):
    ck = large_file[1]
    z, x = unit_codes(2, seed=7), images(2, 16, seed=8)
    with torch.no_grad():
        ours = large32.decoder(z, phase=2, alpha=0.3)
        codes = large32.encoder.eval()(x, phase=2, alpha=0.3)
    assert rel_err(ours, reference_decode(ck["G_running_state_dict"], z, phase=2, alpha=0.3)) < RTOL
    assert rel_err(codes, reference_encode(ck["D_state_dict"], ck["SNU"], x, phase=2, alpha=0.3)) < RTOL


@pytest.mark.parametrize("which", ["large", "small"])
def test_encoder_matches_reference(which, large32, large_file, small64, small_file):
    model, ck = (large32, large_file[1]) if which == "large" else (small64, small_file[1])
    x = images(2, 32, seed=9)
    if model.resolution == 32:
        ours = model.encode(x)
        assert torch.equal(model.encode(x), ours)  # frozen u: encoding again changes nothing
    else:  # the 64² model's encoder from its 32² entry (phase 3): same weights, a quarter of the work
        with torch.no_grad():
            ours = model.encoder.eval()(x, phase=3)
    ref = reference_encode(ck["D_state_dict"], ck["SNU"], x, phase=3)
    assert ours.shape == (2, 512)
    assert (ours - ref).abs().max().item() < RTOL  # unit vectors: absolute = relative


def test_converted_model_round_trips_bit_identically(large_file, tmp_path):
    model = automodulator_from_reference(large_file[1], resolution=8, source={"source_file": "x.pth"})
    loaded = Automodulator.load(model.save(tmp_path / "converted.safetensors"))
    z, x = unit_codes(2, seed=10), images(2, 8, seed=11)
    assert torch.equal(loaded.decode(z), model.decode(z))
    assert torch.equal(loaded.encode(x), model.encode(x))
    assert loaded.provenance == model.provenance and loaded.provenance["source_file"] == "x.pth"


def test_convert_command_core_writes_a_model_file(small_file, tmp_path):
    dst = tmp_path / "small.safetensors"
    summary = convert_command_core(small_file[0], dst, resolution=8)
    assert (summary["variant"], summary["resolution"], summary["phase"]) == ("small", 8, 4)
    assert any("sub-model" in n for n in summary["notes"])
    m = Automodulator.load(dst)
    z = unit_codes(1, seed=12)
    assert rel_err(m.decode(z), reference_decode(small_file[1]["G_running_state_dict"], z, phase=1)) < RTOL
    with pytest.raises(ModelFileError, match="exists already"):
        convert_command_core(small_file[0], dst, resolution=8)
    with pytest.raises(ModelFileError, match="would replace the input"):
        convert_command_core(small_file[0], small_file[0], overwrite=True)
    convert_command_core(small_file[0], dst, resolution=4, overwrite=True)
    assert Automodulator.load(dst).resolution == 4


# --- bad inputs -----------------------------------------------------------------------------------

class NotAllowed:
    """A custom class: a pickle that holds one must be refused, not executed."""


def test_not_a_torch_file(tmp_path):
    for name, data in (("text.pth", b"this is not a checkpoint\n"), ("empty.pth", b"")):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelFileError, match="not a torch checkpoint") as e:
            convert_reference_checkpoint(tmp_path / name)
        assert name in str(e.value)
    with pytest.raises(ModelFileError, match="no such file"):
        convert_reference_checkpoint(tmp_path / "missing.pth")


def test_pickle_with_a_custom_class_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"G_running_state_dict": {}, "payload": NotAllowed()}, path)
    with pytest.raises(ModelFileError, match="refused.*NotAllowed.*never unpickles"):
        convert_reference_checkpoint(path)


def test_torch_file_that_is_not_a_reference_checkpoint(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"state_dict": {"w": torch.zeros(2)}}, path)
    with pytest.raises(ModelFileError, match="missing G_running_state_dict, D_state_dict, SNU"):
        convert_reference_checkpoint(path)
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ModelFileError, match="holds a list"):
        convert_reference_checkpoint(path)


def shallow(ck: dict) -> dict:
    out = dict(ck)
    out["G_running_state_dict"] = dict(ck["G_running_state_dict"])
    out["D_state_dict"] = dict(ck["D_state_dict"])
    out["SNU"] = list(ck["SNU"])
    return out


def test_missing_keys_are_named(large_file):
    ck = shallow(large_file[1])
    g = ck["G_running_state_dict"]
    del g["module.adanorm_blocks.3.mod.weight"]  # its alias still holds the tensor: fine
    assert automodulator_from_reference(ck, resolution=16).resolution == 16
    del g["module.progression.2.conv.0.3.mod.weight"]
    del ck["D_state_dict"]["module.from_rgb.7.bias"]
    with pytest.raises(ModelFileError, match=r"G_running_state_dict lacks module\.adanorm_blocks\.3\.mod\.weight"):
        automodulator_from_reference(ck, resolution=16)
    g["module.progression.2.conv.0.3.mod.weight"] = large_file[1]["G_running_state_dict"][
        "module.adanorm_blocks.3.mod.weight"]
    with pytest.raises(ModelFileError, match=r"D_state_dict lacks module\.from_rgb\.7\.bias"):
        automodulator_from_reference(ck, resolution=16)


def test_wrong_shapes_are_named(large_file):
    ck = shallow(large_file[1])
    ck["G_running_state_dict"]["module.to_rgb.1.weight"] = torch.zeros(3, 256, 1, 1)
    with pytest.raises(ModelFileError, match=r"to_rgb\.1\.weight is \[3, 256, 1, 1\], expected \[3, 512, 1, 1\]"):
        automodulator_from_reference(ck, resolution=16)
    ck = shallow(large_file[1])
    ck["SNU"][2 * 7] = torch.zeros(7, 1)
    with pytest.raises(ModelFileError, match=r"SNU\[14\] is \[7\]"):
        automodulator_from_reference(ck, resolution=16)
    ck["SNU"] = ck["SNU"][:5]
    with pytest.raises(ModelFileError, match="SNU must be a list of 18"):
        automodulator_from_reference(ck, resolution=16)
    ck = shallow(large_file[1])
    ck["G_running_state_dict"]["module.progression.5.conv.1.conv.weight_orig"] = torch.zeros(100, 100, 3, 3)
    with pytest.raises(ModelFileError, match="match neither the large"):
        automodulator_from_reference(ck, resolution=16)


def test_phase_and_resolution_checks(large_file):
    ck = shallow(large_file[1])
    ck["phase"] = "six"
    with pytest.raises(ModelFileError, match="unsupported phase 'six'"):
        automodulator_from_reference(ck)
    ck["phase"] = -3  # clamped like the reference's Session.max_phase
    assert automodulator_from_reference(ck).resolution == 4
    ck["phase"] = 2
    with pytest.raises(ModelFileError, match="trained up to 16²"):
        automodulator_from_reference(ck, resolution=32)
    with pytest.raises(ModelFileError, match="power of two"):
        automodulator_from_reference(ck, resolution=12)


def test_convert_cli_end_to_end(small_file, tmp_path, capsys):
    from conftest import run_cli

    dst = tmp_path / "cli.safetensors"
    assert run_cli("convert", small_file[0], "-o", dst, "--resolution", "16") == 0
    assert "wrote" in capsys.readouterr().err
    assert run_cli("info", dst) == 0
    assert "16² small decoder" in capsys.readouterr().out
    assert run_cli("convert", small_file[0], "-o", dst) == 2  # exists: refused without --overwrite
    bad = tmp_path / "bad.pth"
    bad.write_text("nope")
    assert run_cli("convert", bad, "-o", tmp_path / "x.safetensors") == 2
    err = capsys.readouterr().err
    assert "bad.pth" in err and "Traceback" not in err
