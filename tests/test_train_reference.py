"""The training game against the reference code (AaltoVision/automodulator db683ed, pioneer/train.py and
utils.py): each expected value here is computed from the reference's own formulas, transcribed with their
source lines, on tiny networks, never from automod's loss functions.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from automod_cli.train.loop import Trainer
from automod_cli.train.networks import code_stack_mixed
from automod_cli.train.schedule import resolve_config, step_plan
from conftest import write_random_images

pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


def tiny_config(**over):
    # The paper's game (robust loss, no decoder pixel loss, consistency_grad "all"), layer noise off so
    # that the hand-computed values are deterministic.
    base = {"resolution": 16, "width": 1 / 64, "latent_dim": 16, "phase_starts": [0, 8, 16], "fade": 16,
            "duration": 48, "batch": 8, "workers": 0, "device": "cpu", "log_every": 16, "grid_every": 10**6,
            "checkpoint_every": 10**6, "decoder_recon_weight": 0.0, "loss": "robust", "recon_weight": 0.2,
            "consistency_grad": "all", "layer_noise": False}
    base.update(over)
    return resolve_config("toy32", base)


@pytest.fixture()
def data(tmp_path):
    return write_random_images(tmp_path / "data", 12, 16, seed=0)


def unit_codes(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


# --- the reference's formulas, transcribed -------------------------------------------------------------

def ref_kl_qp(samples):
    """KLN01Loss(direction='qp', minimize=True) (train.py:65-93) with utils.var (utils.py:78-83)."""
    mean = samples.mean(0)
    var = (samples - mean.expand_as(samples)).pow(2).mean(0)
    t1 = (var + mean.pow(2)) / 2
    t2 = -0.5 * var.log()
    return (t1 + t2 - 0.5).mean()


def ref_mismatch(x, y, dist):
    """utils.mismatch (utils.py:60-76)."""
    if dist == "L2":
        return (x - y).pow(2).mean(dim=1).mean()
    x_n, y_n = F.normalize(x, dim=1), F.normalize(y, dim=1)
    return (2 - x_n.mul(y_n)).mean(dim=1).mean()


def ref_gen_seq(dec, bindees, phase, alpha):
    """utils.gen_seq (utils.py:116-123) over Generator.forward (model.py:442-522) with layer noise off:
    each (z, begin, end) runs the decoder blocks [begin, end) on the previous output; the last one (end
    -1: up to the phase) ends with to_rgb (faded when α < 1). Returns every intermediate result."""
    out, outs, prev = None, [], None
    for z, begin, end in bindees:
        end = phase + 1 if end == -1 else end
        if end == phase + 1 and alpha < 1 and phase > 0:
            prev = dec.features(z, begin, phase, out) if begin < phase else out
            h = dec.features(z, phase, phase + 1, prev)
            out = dec.to_image(h, phase, alpha, prev)
        elif end == phase + 1:
            out = dec.to_image(dec.features(z, begin, end, out), phase)
        else:
            out = dec.features(z, begin, end, out)
        outs.append(out)
    return outs


# --- D3: the scale-consistency gradient ---------------------------------------------------------------

@pytest.mark.parametrize("cross,samples", [(1, 40), (2, 40), (2, 24)])  # phase 2 at α = 1, and fading in
def test_consistency_gradient_reaches_the_decoder_through_both_branches(data, tmp_path, cross, samples):
    """consistency_grad "all" = the reference: the gradient of z_mix_diff (train.py:309) flows through the
    re-decode θ_[0,j)(φ(x̃)) *and* through the target h = θ_[0,j)(z_A) (train.py:258-264), neither detached."""
    torch.manual_seed(0)
    t = Trainer(tiny_config(kl_weight=0.0, cos_weight=0.0), data, tmp_path / "run", progress=False)
    plan = step_plan(t.cfg, samples)
    p, alpha, m = plan["phase"], plan["alpha"], 4
    z, z_b = unit_codes(8, 16, 1), unit_codes(8, 16, 2)
    dec, enc = copy.deepcopy(t.decoder), copy.deepcopy(t.encoder)
    t._decoder_compute(plan, cross, m, m, z, z_b)
    got = {k: q.grad for k, q in t.decoder.named_parameters() if q.grad is not None}

    # train.py:291-294: the mixed rows [0, mix_N) take fresh codes from block j on, the others keep z
    alt_mix_z = torch.cat([z_b[:m], z[m:]])
    h, fake = ref_gen_seq(dec, [(z, 0, cross), (alt_mix_z, cross, -1)], p, alpha)  # train.py:258-263
    egz = enc(fake, p, alpha)                                                       # train.py:266
    egz_intermediate = ref_gen_seq(dec, [(egz[:m], 0, cross)], p, alpha)[0]         # train.py:269
    z_mix_diff = ref_mismatch(egz_intermediate.reshape(m, -1), h[:m].reshape(m, -1), "L2")  # train.py:309
    frozen = {f"to_rgb.{p - 1}.weight", f"to_rgb.{p - 1}.bias"}  # train.py:280-282
    names = [k for k, q in dec.named_parameters() if k not in frozen]
    expected = dict(zip(names, torch.autograd.grad(z_mix_diff, [dict(dec.named_parameters())[k] for k in names],
                                                   allow_unused=True, retain_graph=True)))
    expected = {k: v for k, v in expected.items() if v is not None}
    assert set(got) == set(expected)
    for k in expected:
        assert torch.allclose(got[k], expected[k], rtol=1e-4, atol=1e-9), k
    # the target's branch matters: block 0's style layer gets a clearly different gradient without it
    held = torch.autograd.grad(ref_mismatch(egz_intermediate.reshape(m, -1), h[:m].detach().reshape(m, -1), "L2"),
                               [dict(dec.named_parameters())["blocks.0.adain1.style.weight"]])[0]
    assert (held - expected["blocks.0.adain1.style.weight"]).norm() > 0.05 * expected["blocks.0.adain1.style.weight"].norm()
