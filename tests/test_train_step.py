"""One training iteration changes exactly what each step may change; non-finite losses stop the step."""

import pytest
import torch

from automod_cli.errors import UserError
from automod_cli.train.loop import NonFiniteLoss, Trainer
from automod_cli.train.networks import run_decoder
from automod_cli.train.schedule import resolve_config, step_plan
from conftest import write_random_images


pytestmark = pytest.mark.usefixtures("one_thread")  # (conftest)


def make_images(folder, n=12, size=16, seed=0):
    return write_random_images(folder, n, size, seed)


def tiny_config(**over):
    base = {"resolution": 16, "width": 1 / 64, "latent_dim": 16, "phase_starts": [0, 8, 16], "fade": 16,
            "duration": 48, "batch": 8, "workers": 0, "device": "cpu", "log_every": 16, "grid_every": 10**6,
            "checkpoint_every": 10**6, "ema_decay": 0.999, "decoder_recon_weight": 0.0,  # the paper's game
            "loss": "robust", "recon_weight": 0.2, "layer_noise": True}
    base.update(over)
    return resolve_config("toy32", base)


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def changed(before, module):
    return {k for k, v in module.named_parameters() if not torch.equal(before[k], v.detach())}


@pytest.fixture()
def trainer(tmp_path):
    data = make_images(tmp_path / "data")
    torch.manual_seed(0)
    return Trainer(tiny_config(), data, tmp_path / "run", progress=False)


def test_each_step_changes_only_its_parameters(trainer):
    cfg = trainer.cfg
    plan = step_plan(cfg, 12)  # phase 1 (8²), fading in: α = 0.25
    assert plan["phase"] == 1 and 0 < plan["alpha"] < 1
    x = torch.rand(plan["batch"], 3, 8, 8) * 2 - 1
    enc0, dec0, ema0 = snapshot(trainer.encoder), snapshot(trainer.decoder), snapshot(trainer.ema)
    rob0 = snapshot(trainer.robust)
    u0 = [m.u.clone() for m in trainer.encoder.modules() if hasattr(m, "u")]

    trainer.encoder_step(x, plan)
    assert changed(dec0, trainer.decoder) == set()
    enc_changed = changed(enc0, trainer.encoder)
    used_encoder = {k for k in enc0 if k.startswith(("blocks.0.", "blocks.1.", "from_rgb.0.", "from_rgb.1."))}
    assert enc_changed == used_encoder  # block 2 and from_rgb[2] are not in use at phase 1
    assert changed(rob0, trainer.robust) == {"1.latent_alpha", "1.latent_scale"}  # the 8² loss only
    u1 = [m.u.clone() for m in trainer.encoder.modules() if hasattr(m, "u")]
    assert sum(not torch.equal(a, b) for a, b in zip(u0, u1)) == 4  # blocks 0 and 1: 2 convs each

    enc1, dec1, rob1 = snapshot(trainer.encoder), snapshot(trainer.decoder), snapshot(trainer.robust)
    trainer.decoder_step(plan)
    assert changed(enc1, trainer.encoder) == set()
    assert changed(rob1, trainer.robust) == set()
    dec_changed = changed(dec1, trainer.decoder)
    used = {k for k in dec1 if k.startswith(("blocks.0.", "blocks.1.", "to_rgb.1."))}
    assert dec_changed == used  # everything in use except the frozen to_rgb[p-1]
    assert not any(k.startswith(("to_rgb.0.", "blocks.2.", "to_rgb.2.")) for k in dec_changed)
    ema_changed = changed(ema0, trainer.ema)
    assert ema_changed == used
    # EMA moved 0.1% of the way: ema = 0.999·old + 0.001·live
    k = "blocks.1.conv1.weight"
    expected = torch.lerp(ema0[k], dict(trainer.decoder.named_parameters())[k].detach(), 0.001)
    assert torch.allclose(dict(trainer.ema.named_parameters())[k], expected, atol=1e-7)
    # all requires_grad flags are restored after the steps
    assert all(p.requires_grad for p in trainer.encoder.parameters())
    assert all(p.requires_grad for p in trainer.decoder.parameters())


def test_the_device_comes_from_the_config_unless_given(tmp_path):
    data = make_images(tmp_path / "data")
    assert Trainer(tiny_config(device="auto"), data, tmp_path / "a", progress=False).device.type == \
        ("cuda" if torch.cuda.is_available() else "cpu")
    assert Trainer(tiny_config(device="auto"), data, tmp_path / "b", device="cpu", progress=False).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            Trainer(tiny_config(device="cuda"), data, tmp_path / "c", progress=False)


def test_decoder_pixel_loss_of_the_cpu_presets(tmp_path):
    """decoder_recon_weight > 0 adds an L1 term for the decoder only; the encoder is untouched."""
    data = make_images(tmp_path / "data")
    torch.manual_seed(0)
    t = Trainer(tiny_config(decoder_recon_weight=1.0), data, tmp_path / "run", progress=False)
    plan = step_plan(t.cfg, 20)  # phase 2, α = 0.25
    x = torch.rand(plan["batch"], 3, 16, 16) * 2 - 1
    enc0 = snapshot(t.encoder)
    with torch.no_grad():
        z = t.encoder(x, plan["phase"], plan["alpha"])
        expected = (run_decoder(t.decoder, z, plan["phase"], plan["alpha"], False)[0] - x).abs().mean()
    t.cfg["layer_noise"] = False  # so the hand-computed value is deterministic
    terms = t.decoder_step(plan, x)
    assert torch.allclose(terms["recon_dec"], expected, atol=1e-6)
    assert changed(enc0, t.encoder) == set()
    assert torch.allclose(terms["loss_d"], 0.1 * terms["kl_dec"] + 100 * terms["cos"] + terms["consistency"]
                          + terms["recon_dec"], atol=1e-4)
    assert "recon_dec" not in Trainer(tiny_config(), data, tmp_path / "run2", progress=False).decoder_step(plan, x)


def test_non_finite_loss_stops_the_step_and_names_the_term(trainer):
    plan = step_plan(trainer.cfg, 20)  # phase 2
    x = torch.rand(plan["batch"], 3, 16, 16) * 2 - 1
    with torch.no_grad():
        trainer.robust[2].latent_alpha[0, 0, 0] = float("nan")  # only the reconstruction term sees it
    enc0, rob0 = snapshot(trainer.encoder), snapshot(trainer.robust)
    with pytest.raises(NonFiniteLoss, match="'recon'"):
        trainer.encoder_step(x, plan)
    assert changed(enc0, trainer.encoder) == set()
    assert all(bool((a.eq(b) | a.isnan()).all()) for a, b in zip(rob0.values(), trainer.robust.parameters()))
    assert all(p.requires_grad for p in trainer.decoder.parameters())  # the freeze was undone


def test_bf16_precision_on_the_cpu(tmp_path):
    data = make_images(tmp_path / "data")
    torch.manual_seed(0)
    t = Trainer(tiny_config(precision="bf16"), data, tmp_path / "run", progress=False)
    plan = step_plan(t.cfg, 20)
    x = torch.rand(plan["batch"], 3, 16, 16) * 2 - 1
    dec0 = snapshot(t.decoder)
    terms = t.train_iteration(x, plan)
    assert all(torch.isfinite(v).all() for v in terms.values())
    assert changed(dec0, t.decoder)  # the step was applied
    assert all(p.dtype == torch.float32 for p in t.decoder.parameters())  # weights stay fp32
    with pytest.raises(Exception, match="precision"):
        tiny_config(precision="fp8")


def test_image_pool_swaps_fakes_one_after_another():
    # The pool's decisions are index vectors drawn on the host; applied, they must give what the plain
    # sequential rule gives: store until full, then each fake has a 50% chance to be swapped with a
    # random stored one (which may be a fake stored earlier in the same batch).
    from automod_cli.train.pool import ImagePool

    size, n = 5, 4
    pool, gen = ImagePool(size), torch.Generator().manual_seed(7)
    pool.ensure((1, 2, 2), torch.device("cpu"))
    ref_gen, ref_store = torch.Generator().manual_seed(7), []
    swapped = passed_through = 0
    for step in range(12):
        fakes = torch.arange(step * n, (step + 1) * n, dtype=torch.float32).view(n, 1, 1, 1).expand(n, 1, 2, 2)
        out = pool.apply(fakes, *pool.draw(n, gen))
        draws, slots = torch.rand(n, generator=ref_gen), torch.randint(0, size, (n,), generator=ref_gen)
        expected = []
        for k in range(n):
            if len(ref_store) < size:
                ref_store.append(fakes[k])
                expected.append(fakes[k])
            elif draws[k] < 0.5:
                expected.append(ref_store[int(slots[k])])
                ref_store[int(slots[k])] = fakes[k]
                swapped += 1
            else:
                expected.append(fakes[k])
                passed_through += 1
        assert torch.equal(out, torch.stack(expected)), step
        assert torch.equal(pool.images[: pool.count], torch.stack(ref_store)), step
    assert pool.count == size and swapped > 5 and passed_through > 5


def test_cuda_graphs_setting(tmp_path):
    with pytest.raises(UserError, match="cuda_graphs must be true or false"):
        tiny_config(cuda_graphs="yes")
    if torch.cuda.is_available():
        return
    said = []
    data = make_images(tmp_path / "data")
    t = Trainer(tiny_config(cuda_graphs=True), data, tmp_path / "run", progress=False, say=said.append)
    assert t.graphs is None and said == ["cuda_graphs needs a CUDA device: training without CUDA graphs"]
    plan = step_plan(t.cfg, 0)
    terms = t.train_iteration(torch.rand(8, 3, 4, 4) * 2 - 1, plan)
    assert all(torch.isfinite(v) for v in terms.values())


def test_a_state_saved_by_a_cuda_graphs_run_resumes_without_graphs(tmp_path):
    # A CUDA-graphs run saves capturable Adam (its step count on the device); capturable Adam refuses
    # CPU parameters, so resuming such a state on a CPU must turn it back into plain Adam.
    data = make_images(tmp_path / "data")
    t = Trainer(tiny_config(), data, tmp_path / "a", progress=False)
    plan = step_plan(t.cfg, 0)
    x = torch.rand(8, 3, 4, 4) * 2 - 1
    t.train_iteration(x, plan)
    for opt in (t.opt_e, t.opt_d):
        for group in opt.param_groups:
            group["capturable"] = True  # as the GPU run had it
    tensors, meta = t.state_dict()
    assert all(g["capturable"] for g in meta["opt_e"]["param_groups"] + meta["opt_d"]["param_groups"])
    resumed = Trainer(tiny_config(), data, tmp_path / "b", progress=False)
    resumed.load_state_dict(tensors, meta)
    assert not any(g["capturable"] for o in (resumed.opt_e, resumed.opt_d) for g in o.param_groups)
    terms = resumed.train_iteration(x, plan)
    assert all(torch.isfinite(v) for v in terms.values())


def test_consistency_grad_image_reaches_the_decoder_only_through_the_mixed_images(tmp_path):
    # With only the consistency term weighted, the decoder's gradient under consistency_grad "image" must
    # be that of MSE(θ_[0,j)(φ(x̃)), h) with the measuring blocks and the target h held fixed, so the
    # coarse blocks get gradient only through the images they helped draw; under "all" (as the
    # reference) it differs: the re-decode trains the coarse blocks too.
    import copy

    import torch.nn.functional as F

    from automod_cli.train.networks import code_stack_mixed

    data = make_images(tmp_path / "data")
    grads = {}
    for mode in ("image", "all"):
        torch.manual_seed(0)
        t = Trainer(tiny_config(consistency_grad=mode, kl_weight=0.0, cos_weight=0.0, layer_noise=False), data,
                    tmp_path / mode, progress=False)
        plan = step_plan(t.cfg, 40)  # phase 2 at α = 1
        p, cross, m = plan["phase"], 1, 4
        g = torch.Generator().manual_seed(1)
        z, z_b = (F.normalize(torch.randn(8, 16, generator=g), dim=1) for _ in range(2))
        dec, enc = copy.deepcopy(t.decoder), copy.deepcopy(t.encoder)
        t._decoder_compute(plan, cross, m, m, z, z_b)
        grads[mode] = {k: q.grad.clone() for k, q in t.decoder.named_parameters() if q.grad is not None}

    fakes, h = run_decoder(dec, code_stack_mixed(z, z_b, m, cross, p + 1), p, 1.0, False, split=cross)
    z_hat = enc(fakes, p, 1.0)
    measure = copy.deepcopy(dec).requires_grad_(False)
    h_again = measure.features(z_hat[:m], 0, cross)
    loss = (h_again - h[:m].detach()).pow(2).sum() / (m * h_again[0].numel())
    names = [k for k, q in dec.named_parameters() if k in grads["image"]]
    expected = torch.autograd.grad(loss, [dict(dec.named_parameters())[k] for k in names])
    for k, e in zip(names, expected):
        assert torch.allclose(grads["image"][k], e, rtol=1e-4, atol=1e-7), k
    coarse = [k for k in names if k.startswith("blocks.0.")]
    assert coarse and any(not torch.allclose(grads["image"][k], grads["all"][k], rtol=1e-3) for k in coarse)


def test_init_starts_from_a_model_file_at_the_top_phase(tmp_path):
    from automod_cli.model import Automodulator

    data = make_images(tmp_path / "data")
    torch.manual_seed(1)
    donor = Trainer(tiny_config(), data, tmp_path / "donor", progress=False)
    donor.train_iteration(torch.rand(8, 3, 4, 4) * 2 - 1, step_plan(donor.cfg, 0))
    model_path = donor.snapshot().save(tmp_path / "donor.safetensors")
    model = Automodulator.load(model_path)

    probe = Trainer(tiny_config(init=str(model_path), duration=64), data, tmp_path / "probe", progress=False)
    assert probe.restore_or_start(overwrite=False) is False
    assert probe.samples == 16 + 16  # the top phase's start + the fade: α = 1 at 16²
    assert step_plan(probe.cfg, probe.samples)["phase"] == 2 and step_plan(probe.cfg, probe.samples)["alpha"] == 1.0
    for mine, theirs in ((probe.encoder, model.encoder), (probe.decoder, model.decoder), (probe.ema, model.decoder)):
        for (k, a), b in zip(mine.state_dict().items(), theirs.state_dict().values()):
            assert torch.equal(a, b), k

    t = Trainer(tiny_config(init=str(model_path), duration=40), data, tmp_path / "run", progress=False)
    assert t.run() == 40  # one iteration of 8
    prov = Automodulator.load(tmp_path / "run" / "model.safetensors").provenance
    assert prov["init_from"]["path"] == str(model_path) and prov["init_from"]["provenance"]["samples_seen"] == 8
    assert len(prov["init_from"]["sha256"]) == 64 and prov["samples_seen"] == 40

    # Re-running resumes the run (the init model is not read again) and keeps the record.
    again = Trainer(tiny_config(init=str(model_path), duration=64), data, tmp_path / "run", progress=False)
    assert again.restore_or_start(overwrite=False) is True
    assert again.samples == 40 and again.init_from == t.init_from

    with pytest.raises(UserError, match="width: model 0.015625, run 0.03125"):
        Trainer(tiny_config(init=str(model_path), width=1 / 32), data, tmp_path / "w", progress=False) \
            .restore_or_start(overwrite=False)
    with pytest.raises(UserError, match="leaves nothing to train"):
        Trainer(tiny_config(init=str(model_path), duration=32), data, tmp_path / "d", progress=False) \
            .restore_or_start(overwrite=False)
