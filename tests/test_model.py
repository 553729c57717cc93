"""The model core: shapes, fade-in, code stacks, spectral norm, layer noise."""

from __future__ import annotations

import pytest
import torch

from automod_cli.model import Automodulator, ModelConfig, code_stack, mix_stack, parse_scales
from automod_cli.model.layers import AdaIN, EqualConv2d, SpectralNormConv2d, fade, fold_upsample_into_conv3x3


@pytest.mark.parametrize("resolution", [4, 8, 16, 32, 64, 128, 256, 512, 1024])
def test_shapes_at_every_resolution(resolution):
    cfg = ModelConfig(resolution=resolution, width=1 / 32, latent_dim=16)
    m = Automodulator(cfg).eval()
    assert m.n_blocks == len(cfg.resolutions) and cfg.resolutions[-1] == resolution
    # Every phase decodes and encodes at its own resolution.
    for phase in sorted({0, cfg.max_phase // 2, cfg.max_phase}):
        r = 4 * 2**phase
        z = torch.nn.functional.normalize(torch.randn(2, 16), dim=1)
        with torch.no_grad():
            x = m.decoder(z, phase=phase)
            assert x.shape == (2, 3, r, r)
            code = m.encoder(x, phase=phase)
        assert code.shape == (2, 16)
        assert torch.allclose(code.norm(dim=1), torch.ones(2), atol=1e-5)


def test_paper_parameter_counts():
    m = Automodulator(ModelConfig(resolution=256))
    n_dec = sum(p.numel() for p in m.decoder.parameters())
    n_enc = sum(p.numel() for p in m.encoder.parameters())
    assert abs(n_dec / 1e6 - 29.0) < 0.1  # spec: large decoder to 256² ≈ 29.0M
    assert abs(n_enc / 1e6 - 25.4) < 0.1  # spec: encoder ≈ 25.4M


def test_small_variant_halves_high_resolution_channels():
    large = ModelConfig(resolution=256).decoder_channels
    small = ModelConfig(resolution=256, variant="small").decoder_channels
    assert large[:4] == small[:4] == [512] * 4
    assert small[4:] == [c // 2 for c in large[4:]]


def test_fade_in_continuity(tiny_model):
    dec, enc = tiny_model.decoder, tiny_model.encoder
    z = torch.nn.functional.normalize(torch.randn(3, 64), dim=1)
    with torch.no_grad():
        # α = 1 is the plain new phase; α = 0 is the previous phase's image, upsampled.
        full = dec(z, phase=3, alpha=1.0)
        assert torch.equal(dec(z, phase=3, alpha=1.0), full)
        prev = dec(z, phase=2)
        faded0 = dec(z, phase=3, alpha=0.0)
        assert torch.allclose(faded0, torch.nn.functional.interpolate(prev, scale_factor=2), atol=1e-6)
        mid = dec(z, phase=3, alpha=0.5)
        assert torch.allclose(mid, 0.5 * faded0 + 0.5 * full, atol=1e-5)
        # The encoder mirrors it: at α = 0 a 32² image is read through the 16² path.
        x = torch.rand(2, 3, 32, 32) * 2 - 1
        assert torch.allclose(enc(x, phase=3, alpha=0.0), enc(torch.nn.functional.avg_pool2d(x, 2), phase=2), atol=1e-6)
        assert torch.allclose(enc(x, phase=3, alpha=1.0), enc(x, phase=3), atol=0)


def test_fade_blends_mixed_dtypes_in_the_wider_one():
    # Under CUDA autocast the upsampled skip path came out fp32 beside a bf16 to_rgb output, and
    # torch.lerp refused the pair mid-fade (seen on an H200). The blend takes the wider dtype.
    old, new = torch.full((2, 3), 1.0), torch.full((2, 3), 3.0, dtype=torch.bfloat16)
    out = fade(old, new, 0.25)
    assert out.dtype == torch.float32 and torch.equal(out, torch.full((2, 3), 1.5))
    assert fade(new, old, 0.5).dtype == torch.float32
    assert fade(new, new, 0.5).dtype == torch.bfloat16


def test_upsampled_conv_is_upsample_then_conv_and_copies_no_constant_per_call(monkeypatch):
    conv = EqualConv2d(4, 5, 3, padding=1)
    x = torch.randn(2, 4, 6, 6)
    expected = conv(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))
    assert torch.allclose(conv.forward_upsampled(x), expected, atol=1e-5)
    # The fold matrix reaches a device once: a per-call host-to-device copy is a CUDA synchronisation
    # per conv (found by tests/test_train_cuda.py on an H200). After the first call no copy is made.
    fold_upsample_into_conv3x3(conv.weight)
    copies = []
    original = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda self, *a, **k: copies.append(a) or original(self, *a, **k))
    conv.forward_upsampled(x)
    assert copies == []


def test_equal_rows_code_stack_is_exactly_the_single_code_decode(tiny_model):
    z = torch.nn.functional.normalize(torch.randn(4, 64), dim=1)
    single = tiny_model.decode(z)
    stacked = tiny_model.decode(code_stack(z, tiny_model.n_blocks))
    assert torch.equal(single, stacked)


def test_per_sample_mix_in_one_batched_call(tiny_model):
    za, zb = (torch.nn.functional.normalize(torch.randn(3, 64), dim=1) for _ in range(2))
    blocks = parse_scales("4-8", tiny_model.n_blocks)
    batched = tiny_model.decode(mix_stack(code_stack(za, 4), zb, blocks))
    for i in range(3):  # each row is its own mix, not one code broadcast over the batch
        one = tiny_model.decode(mix_stack(code_stack(za[i:i + 1], 4), zb[i:i + 1], blocks))
        assert torch.allclose(batched[i], one[0], atol=1e-5)
    # Changing the coarse code changes the image; changing an unused block's code would not exist.
    assert not torch.allclose(batched, tiny_model.decode(za))


def test_split_decode_equals_one_call(tiny_model):
    dec = tiny_model.decoder
    z = torch.nn.functional.normalize(torch.randn(2, 4, 64), dim=-1)
    with torch.no_grad():
        h = dec.features(z, 0, 2)
        split = dec.to_image(dec.features(z, 2, 4, h), 3)
        assert torch.allclose(split, dec(z), atol=1e-6)


def test_spectral_norm_u_frozen_in_eval_and_updated_in_train():
    torch.manual_seed(0)
    conv = SpectralNormConv2d(4, 8, 3, 1)
    x = torch.randn(2, 4, 5, 5)
    conv.eval()
    u0 = conv.u.clone()
    y1, y2 = conv(x), conv(x)
    assert torch.equal(conv.u, u0) and torch.equal(y1, y2)
    conv.train()
    conv(x)
    assert not torch.equal(conv.u, u0)
    # Many power iterations converge to the true spectral norm.
    for _ in range(200):
        conv(x)
    w = conv.normalized_weight().reshape(8, -1)
    assert abs(torch.linalg.matrix_norm(w, ord=2).item() - 1.0) < 1e-3


def test_spectral_norm_matches_reference_formula():
    torch.manual_seed(1)
    conv = SpectralNormConv2d(3, 5, 3, 1).eval()
    wm = conv.weight.reshape(5, -1)
    u = conv.u[:, None]
    v = wm.t() @ u
    v = v / v.norm()
    u2 = wm @ v
    u2 = u2 / u2.norm()
    sigma = (u2.t() @ wm @ v).item()
    assert torch.allclose(conv.normalized_weight(), conv.weight / sigma, atol=1e-6)


def test_adain_normalises_then_modulates():
    torch.manual_seed(0)
    ada = AdaIN(8, 4)
    x = torch.randn(2, 4, 6, 6) * 3 + 1
    code = torch.randn(2, 8)
    gamma, beta = ada.style(code).chunk(2, dim=1)
    expected = gamma[..., None, None] * (x - x.mean((2, 3), keepdim=True)) / x.std((2, 3), keepdim=True) \
        + beta[..., None, None]
    assert torch.allclose(ada(x, code), expected, atol=1e-4)


def test_layer_noise_switch(tiny_model):
    z = torch.nn.functional.normalize(torch.randn(2, 64), dim=1)
    a, b = tiny_model.decode(z), tiny_model.decode(z)
    assert torch.equal(a, b)
    torch.manual_seed(1)
    n1 = tiny_model.decode(z, noise=True)
    torch.manual_seed(2)
    n2 = tiny_model.decode(z, noise=True)
    assert not torch.allclose(n1, n2) and not torch.allclose(n1, a)


def test_layer_noise_keeps_the_maps_dtype_and_values():
    from automod_cli.model.layers import LayerNoise

    noise = LayerNoise(4)
    with torch.no_grad():
        noise.scale.copy_(torch.tensor([0.5, -1.0, 0.0, 2.0]))
    x = torch.randn(2, 4, 3, 3)
    torch.manual_seed(7)
    y = noise(x, True)
    torch.manual_seed(7)
    assert torch.allclose(y, x + noise.scale.view(1, -1, 1, 1) * torch.randn(x.shape), atol=1e-6)
    assert torch.equal(y[:, 2], x[:, 2])  # a zero scale adds nothing
    # Under bf16 autocast a bf16 map stays bf16: an fp32 result would run the AdaIN after it in fp32 and cost
    # the next conv a cast (toy64 width 1/8 at 64² on a 2-core CPU: 11.5 against 13.0 images/s).
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert noise(x.bfloat16(), True).dtype == torch.bfloat16


def test_decoder_uses_codes_as_given(tiny_model):
    """No re-normalisation inside: an edited code z + k·δ is not projected back to the sphere."""
    z = torch.nn.functional.normalize(torch.randn(1, 64), dim=1)
    assert not torch.allclose(tiny_model.decode(z), tiny_model.decode(2 * z))


def test_bad_shapes_are_user_errors(tiny_model):
    from automod_cli.errors import UserError

    with pytest.raises(UserError):
        tiny_model.encode(torch.zeros(1, 3, 16, 16))
    with pytest.raises(UserError):
        tiny_model.decode(torch.zeros(1, 63))
    with pytest.raises(UserError):
        ModelConfig(resolution=48)
