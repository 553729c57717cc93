"""Training with compiled blocks (the compile setting): the same training as eager, resumed bit-exactly,
names unchanged, bf16 with AdaIN in fp32, and a clear line when compiling fails."""

import copy
import shutil

import pytest
import torch

from automod_cli.errors import UserError
from automod_cli.model.layers import AdaIN
from automod_cli.train.compiled import adains_in_fp32
from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config, step_plan
from test_train_resume import OVERRIDES, assert_same_state, make_images, state_tensors

pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(shutil.which("g++") is None and shutil.which("c++") is None,
                                 reason="torch.compile needs a C++ compiler on a CPU")]

# 8² with a fade (64 samples at 4², a fade to 128, then 8² at α = 1): both resolutions, α changing every
# iteration (nothing may recompile for it), the pool and crossovers as in any run.
RUN = dict(OVERRIDES, duration=160)


def test_compiled_blocks_compute_what_eager_blocks_do(tmp_path):
    # One iteration of the game from the same weights, batch and draws, at 8² in the fade (α = 0.5):
    # the losses and the decoder's gradients agree up to the fused kernels' float rounding. (Whole runs
    # are not compared: Adam's first steps move each weight by ±lr whatever the gradient's size, so
    # rounding-level differences in tiny gradients flip whole steps.)
    data = make_images(tmp_path / "data")
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    runs = {}
    for compiled in (False, True):
        cfg = resolve_config("toy32", dict(RUN, compile=compiled))
        t = Trainer(cfg, data, tmp_path / f"run{compiled}", progress=False)
        blocks = [*t.encoder.blocks, *t.decoder.blocks]
        assert all((b._compiled_call_impl is not None) == compiled for b in blocks)
        assert t.ema.blocks[1]._compiled_call_impl is None  # the EMA decoder stays eager
        assert ("blocks compiled" in t.startup_summary(resumed=False)[2]) == compiled  # the device line
        plan = step_plan(cfg, 96)
        assert plan["resolution"] == 8 and plan["alpha"] == 0.5
        terms = t.train_iteration(x, plan)
        grads = {n: q.grad.clone() for n, q in t.decoder.named_parameters() if q.grad is not None}
        runs[compiled] = terms, grads, t.state_dict()[0].keys()
    (te, ge, ke), (tc, gc, kc) = runs[False], runs[True]
    assert ke == kc  # the state's (and model file's) names are an eager run's
    for k in te:
        assert torch.allclose(te[k], tc[k], rtol=1e-4, atol=1e-6), (k, te[k], tc[k])
    assert ge.keys() == gc.keys() and len(ge) >= 16
    for n in ge:
        assert torch.allclose(ge[n], gc[n], rtol=1e-3, atol=1e-5 * ge[n].abs().max().item()), n


def test_a_compiled_run_resumes_bit_exactly(tmp_path):
    data = make_images(tmp_path / "data")
    cfg = resolve_config("toy32", dict(RUN, compile=True))
    Trainer(cfg, data, tmp_path / "ref", progress=False).run()
    Trainer(cfg, data, tmp_path / "run", progress=False).run(max_iterations=13)  # 104 samples, saved at 96
    resumed = Trainer(cfg, data, tmp_path / "run", progress=False)
    resumed.run()
    assert resumed.samples == 160
    assert_same_state(state_tensors(tmp_path / "ref"), state_tensors(tmp_path / "run"))


def test_adain_in_fp32_computes_in_fp32_under_autocast():
    # Compiled bf16 with AdaIN in bf16 trained 1.2 dB worse than eager (train/compiled.py); in fp32 it does not.
    torch.manual_seed(0)
    plain = AdaIN(16, 4)
    wrapped = copy.deepcopy(plain)
    adains_in_fp32(wrapped)
    x = (torch.randn(2, 4, 8, 8) * 3 + 1).to(torch.bfloat16)
    code = torch.nn.functional.normalize(torch.randn(2, 16), dim=1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = wrapped(x, code)
        y_bf16 = plain(x, code)
    y32 = plain(x.float(), code)
    assert y.dtype == torch.bfloat16 and torch.equal(y, y32.to(torch.bfloat16))
    assert not torch.equal(y_bf16, y)  # autocast alone computes it otherwise
    y.float().square().sum().backward()
    y32.to(torch.bfloat16).float().square().sum().backward()  # the same upstream gradient, in fp32
    g_wrapped, g_plain = wrapped.style.weight.grad, plain.style.weight.grad
    assert g_wrapped.dtype == torch.float32 and torch.allclose(g_wrapped, g_plain, rtol=1e-5, atol=1e-6)
    z = torch.randn(2, 4, 8, 8)  # fp32 without autocast: what it computed before
    assert torch.equal(wrapped(z, code), plain(z, code))
    twin = copy.deepcopy(wrapped)  # a copy computes with its own weights
    with torch.no_grad():
        twin.style.bias.add_(1.0)
    assert torch.equal(twin(z, code), twin.__class__.forward(twin, z, code))
    assert not torch.equal(twin(z, code), wrapped(z, code))


def test_compiled_bf16_trains_with_adain_in_fp32(tmp_path):
    # One iteration from the same weights, batch and draws: compiled bf16 computes what eager bf16 with
    # AdaIN in fp32 does, up to bf16 rounding in the fused kernels; the EMA decoder stays as it was.
    data = make_images(tmp_path / "data")
    x = torch.rand(8, 3, 8, 8, generator=torch.Generator().manual_seed(5)) * 2 - 1
    runs = {}
    for compiled in (False, True):
        cfg = resolve_config("toy32", dict(RUN, precision="bf16", compile=compiled))
        t = Trainer(cfg, data, tmp_path / f"run{compiled}", progress=False)
        if not compiled:
            adains_in_fp32(t.decoder)
        adains = [m for m in t.decoder.modules() if isinstance(m, AdaIN)]
        assert len(adains) >= 3 and all("forward" in vars(m) for m in adains)
        assert not any("forward" in vars(m) for m in t.ema.modules() if isinstance(m, AdaIN))
        assert ("blocks compiled (AdaIN in fp32)" in t.startup_summary(resumed=False)[2]) == compiled
        terms = t.train_iteration(x, step_plan(cfg, 96))
        runs[compiled] = terms
    for k in runs[False]:
        e, c = runs[False][k], runs[True][k]
        assert torch.isfinite(c).all() and torch.allclose(e, c, rtol=3e-2, atol=1e-3), (k, e, c)


def test_a_compile_that_fails_says_so_in_one_line(tmp_path, monkeypatch):
    import torch._inductor.config as inductor

    data = make_images(tmp_path / "data")
    # no C++ compiler, and an empty kernel cache (a cached kernel would need none)
    monkeypatch.setattr(inductor.cpp, "cxx", (None, str(tmp_path / "no-such-compiler")))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor-cache"))
    torch._dynamo.reset()
    cfg = resolve_config("toy32", dict(RUN, duration=16, compile=True))
    with pytest.raises(UserError, match=r"compiling the networks \(the compile setting\) failed: .*C\+\+ compiler.*train without "
                                        r"--compile"):
        Trainer(cfg, data, tmp_path / "run", progress=False).run()
    torch._dynamo.reset()
