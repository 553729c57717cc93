"""The training game against the reference code (AaltoVision/automodulator db683ed, pioneer/train.py and
utils.py): each expected value here is computed from the reference's own formulas, transcribed with their
source lines, on tiny networks, never from automod's loss functions.
"""

import copy

import pytest
import torch
import torch.nn.functional as F

from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config, step_plan
from conftest import write_random_images

pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


def tiny_config(**over):
    # The paper's game (robust loss, no decoder pixel loss, consistency_grad "all"), layer noise off so
    # that the hand-computed values are deterministic.
    base = {"resolution": 16, "width": 1 / 64, "latent_dim": 16, "phase_starts": [0, 8, 16], "fade": 16,
            "duration": 48, "batch": 8, "workers": 0, "device": "cpu", "log_every": 16, "grid_every": 10**6,
            "checkpoint_every": 10**6, "decoder_recon_weight": 0.0, "loss": "robust", "recon_weight": 0.2,
            "consistency_grad": "all", "layer_noise": False, "fade_first_phase": True, "robust_carry_over": True}
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
    style = expected["blocks.0.adain1.style.weight"]
    assert (held - style).norm() > 0.05 * style.norm()


# --- the encoder step's loss ----------------------------------------------------------------------------

@pytest.mark.parametrize("samples", [12, 40])  # phase 1 fading in (margin 0, match_x 1.0); phase 2, α = 1
def test_encoder_loss_composition_counts_the_real_kl_twice(data, tmp_path, samples):
    torch.manual_seed(0)
    t = Trainer(tiny_config(), data, tmp_path / "run", progress=False)
    plan = step_plan(t.cfg, samples)
    p, alpha, margin, match_x = plan["phase"], plan["alpha"], plan["margin"], plan["match_x"]
    assert (margin, match_x) == ((0.0, 1.0) if p == 1 else (0.05, 1.5))
    r = plan["resolution"]
    x = torch.rand(8, 3, r, r, generator=torch.Generator().manual_seed(3)) * 2 - 1
    z, z_b, cross, mix_n = unit_codes(8, 16, 4), unit_codes(8, 16, 5), p, 2
    terms = t._encoder_loss(x, plan, z, z_b, cross, mix_n, None, None)

    with torch.no_grad():
        alt_mix_z = torch.cat([z_b[:mix_n], z[mix_n:]])                              # train.py:203-205
        fake = ref_gen_seq(t.decoder, [(z, 0, cross), (alt_mix_z, cross, -1)], p, alpha)[-1]  # train.py:211-213
        real_z = t.encoder(x, p, alpha)                                               # train.py:130
        kl_real = ref_kl_qp(real_z) * 0.1                                             # train.py:135; config.py:131
        recon_x = t.decoder(real_z, p, alpha)                                          # train.py:171
        err = t.robust[p](recon_x - x) * match_x * 0.2                                # train.py:176 (mean NLL)
        egz = t.encoder(fake, p, alpha)                                               # train.py:221
        kl_fake = -ref_kl_qp(egz) * 0.1                                               # train.py:224; KL_maximizer
        if margin > 0.0:                                                              # train.py:226-229
            kl_loss = torch.min(torch.ones_like(kl_fake) * margin / 2,
                                torch.max(-torch.ones_like(kl_fake) * margin, kl_real + kl_fake))
        else:
            kl_loss = kl_real + kl_fake
        e_loss = kl_real + err + kl_loss                                              # train.py:241: sum(e_losses)
    assert terms["loss_e"].item() == pytest.approx(e_loss.item(), rel=1e-5, abs=1e-6)
    assert terms["kl_gap"].item() == pytest.approx(kl_loss.item(), rel=1e-5, abs=1e-7)
    assert terms["recon"].item() == pytest.approx((err / (match_x * 0.2)).item(), rel=1e-5)
    once = err + kl_loss  # with the real KL counted once the value would differ clearly
    assert abs(once.item() - e_loss.item()) > 100 * 1e-5 * abs(e_loss.item())


# --- style mixing: how many rows, which blocks ----------------------------------------------------------

def test_mixed_rows_and_crossover_blocks_follow_the_reference(data, tmp_path):
    """mix_N = int(stylemix·batch) (train.py:197-198 encoder, 0.25; train.py:286-287 decoder, 0.5, none at
    phase 0; config.py:53-54), crossover block j = np.random.randint(low=1, high=phase+1) (train.py:210,
    257), i.e. uniform on 1..phase."""
    torch.manual_seed(0)
    t = Trainer(tiny_config(phase_starts=[0, 8, 16], batch=[14, 14, 6]), data, tmp_path / "run", progress=False)
    seen = {"encoder": [], "decoder": []}
    t._encoder_compute = lambda plan, cross, n_mixed, **_: seen["encoder"].append(
        (plan["phase"], cross, n_mixed)) or {}
    t._decoder_compute = lambda plan, cross, n_mixed, m, **_: seen["decoder"].append(
        (plan["phase"], cross, n_mixed)) or {}
    x = {r: torch.zeros(1, 3, r, r) for r in (4, 8, 16)}
    for samples in (0, 12, 20, 40):
        plan = step_plan(t.cfg, samples)
        for _ in range(60):
            t.encoder_step(x[plan["resolution"]], plan)
            t.decoder_step(plan)
    for step, stylemix in (("encoder", 0.25), ("decoder", 0.5)):
        for phase in (0, 1, 2):
            rows = {(cross, n) for p, cross, n in seen[step] if p == phase}
            batch = t.cfg["batch"][phase]
            if phase == 0:
                assert {cross for cross, _ in rows} == {None}, step  # no mixing at 4²
            else:
                assert {n for _, n in rows} == {int(stylemix * batch)}, (step, phase)
                assert {cross for cross, _ in rows} == set(range(1, phase + 1)), (step, phase)
    # the two-GPU batch at 512², 14: 3 mixed fakes in the encoder step (round() would give 4), 7 in the decoder's
    assert {n for p, _, n in seen["encoder"] if p == 1} == {3}


# --- the decoder step's cosine term ---------------------------------------------------------------------

def test_cosine_term_leaves_out_the_mixed_rows(data, tmp_path):
    """z_diff = mismatch(egz[mix_N:], z[mix_N:], 'cos') (train.py:308): only the unmixed rows."""
    torch.manual_seed(0)
    t = Trainer(tiny_config(), data, tmp_path / "run", progress=False)
    plan = step_plan(t.cfg, 40)
    p, m, cross = plan["phase"], 4, 1
    z, z_b = unit_codes(8, 16, 6), unit_codes(8, 16, 7)
    dec, enc = copy.deepcopy(t.decoder), copy.deepcopy(t.encoder)
    terms = t._decoder_compute(plan, cross, m, m, z, z_b)
    with torch.no_grad():
        fake = ref_gen_seq(dec, [(z, 0, cross), (torch.cat([z_b[:m], z[m:]]), cross, -1)], p, 1.0)[-1]
        egz = enc(fake, p, 1.0)
        expected = ref_mismatch(egz[m:], z[m:], "cos")
        with_mixed = ref_mismatch(egz, z, "cos")
    assert terms["cos"].item() == pytest.approx(expected.item(), rel=1e-6)
    assert abs(with_mixed.item() - expected.item()) > 1e-5  # (the mixed rows would change it)


# --- the image pool --------------------------------------------------------------------------------------

def test_the_pool_is_off_while_a_phase_fades_in_including_the_first(data, tmp_path):
    """``if session.alpha >= 1.0: fake = generatedImagePool.query(fake.data)`` (train.py:215); α ramps at 4²
    too (train.py:399), so the pool is off for the first 1.2M samples of a run."""
    torch.manual_seed(0)
    t = Trainer(tiny_config(phase_starts=[0, 16, 32], fade=8, duration=64), data, tmp_path / "run", progress=False)
    used = []
    real = t.pool.draw
    t.pool.draw = lambda n, gen: used.append(n) or real(n, gen)
    for samples, pooled in ((0, False), (4, False), (8, True), (16, False), (20, False), (24, True)):
        plan = step_plan(t.cfg, samples)
        if plan["phase"] != t.pool_phase:
            t.train_iteration(torch.rand(8, 3, plan["resolution"], plan["resolution"]) * 2 - 1, plan)
            real = t.pool.draw  # a phase change made a new pool
            t.pool.draw = lambda n, gen: used.append(n) or real(n, gen)
        used.clear()
        t.encoder_step(torch.rand(8, 3, plan["resolution"], plan["resolution"]) * 2 - 1, plan)
        assert bool(used) == pooled, samples
        assert (t.pool.count > 0) == pooled, samples


# --- a new phase's robust loss ---------------------------------------------------------------------------

@pytest.mark.parametrize("carry", [True, False])
def test_robust_loss_of_a_new_phase_starts_from_the_previous_one(data, tmp_path, carry):
    """prepareAdaptiveLossForNewPhase (session.py:247-256), run at the first iteration of a phase
    (train.py:376, 401-403): for offset in range(4): new.latent_{scale,alpha}[0][offset::4] = old[0]."""
    torch.manual_seed(0)
    t = Trainer(tiny_config(robust_carry_over=carry), data, tmp_path / "run", progress=False)
    t.train_iteration(torch.rand(8, 3, 4, 4) * 2 - 1, step_plan(t.cfg, 0))
    with torch.no_grad():  # give the 4² loss distinct values
        t.robust[0].latent_alpha.normal_()
        t.robust[0].latent_scale.normal_()
    old = {k: getattr(t.robust[0], k).detach().reshape(1, -1).clone() for k in ("latent_alpha", "latent_scale")}
    fresh = {k: getattr(t.robust[1], k).detach().clone() for k in old}
    starts = []  # robust[1] as each encoder step begins
    real_step = t.encoder_step

    def spy(x, plan):
        starts.append({k: getattr(t.robust[1], k).detach().clone() for k in old})
        return real_step(x, plan)

    t.encoder_step = spy
    t.train_iteration(torch.rand(8, 3, 8, 8) * 2 - 1, step_plan(t.cfg, 8))  # the first iteration at 8²
    at_start = starts[0]
    for k in old:
        if not carry:
            assert torch.equal(at_start[k], fresh[k])
            continue
        expected = torch.empty(1, 4 * old[k].shape[1])
        for offset in range(4):
            expected[0][offset::4] = old[k][0]
        assert torch.equal(at_start[k].reshape(1, -1), expected), k
        # (the reference's index map, not a spatial upsample: 8² row y reads 4² row y // 2, columns
        # (y % 2)·2 + x // 4)
        new = at_start[k].reshape(3, 8, 8)
        y, x = torch.meshgrid(torch.arange(8), torch.arange(8), indexing="ij")
        assert torch.equal(new, old[k].reshape(3, 4, 4)[:, y // 2, (y % 2) * 2 + x // 4])
    # only once: the next iteration of the phase goes on from where the first step left it
    t.train_iteration(torch.rand(8, 3, 8, 8) * 2 - 1, step_plan(t.cfg, 12))
    assert not torch.equal(starts[1]["latent_alpha"], at_start["latent_alpha"])
