"""Training on CUDA: bf16 autocast, channels-last, no host synchronisation inside an iteration, and
fp32 results that agree with the CPU. Skipped without a GPU (CI has none): run on a GPU machine with
``python -m pytest -q tests/test_train_cuda.py``."""

import pytest
import torch

from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config, step_plan
from conftest import write_random_images

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def tiny_config(device: str, **over):
    # The paper's game (robust loss, no decoder pixel loss), the pool on, style mixing in both steps.
    base = {"resolution": 16, "width": 1 / 32, "latent_dim": 32, "phase_starts": [0, 8, 16], "fade": 8,
            "duration": 10**6, "batch": 8, "workers": 0, "device": device, "log_every": 10**6,
            "grid_every": 10**6, "checkpoint_every": 10**6, "loss": "robust", "recon_weight": 0.2,
            "decoder_recon_weight": 0.0, "pool_size": 4, "seed": 3}
    base.update(over)
    return resolve_config("toy32", base)


@pytest.fixture()
def exact_fp32():
    """TF32 off for the test (fp32 convs and matmuls in full precision), restored after it."""
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32


def batch(plan, seed):
    g = torch.Generator().manual_seed(seed)
    r = plan["resolution"]
    return torch.rand(plan["batch"], 3, r, r, generator=g) * 2 - 1


@needs_cuda
def test_an_iteration_never_synchronises_with_the_host(tmp_path):
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    trainer = Trainer(tiny_config("cuda"), data, tmp_path / "run", progress=False)
    assert trainer.device.type == "cuda"  # (until Trainer read cfg["device"], these tests ran on the CPU)
    autocast = trainer._autocast()
    assert autocast.fast_dtype == torch.bfloat16 and autocast._enabled  # precision "auto" on CUDA
    convs = [p for p in list(trainer.encoder.parameters()) + list(trainer.decoder.parameters()) if p.dim() == 4]
    assert convs and all(p.is_contiguous(memory_format=torch.channels_last) for p in convs)

    plan = step_plan(trainer.cfg, 40)  # phase 2 at α = 1: the pool and both mixes in use
    assert plan["phase"] == 2 and plan["alpha"] == 1.0
    for k in range(3):  # warm-up: lazy initialisation (cuDNN, pinned-memory cache, the robust loss table)
        trainer.train_iteration(batch(plan, k).pin_memory(), plan)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")  # any synchronising call now raises
    try:
        for k in range(3):
            terms = trainer.train_iteration(batch(plan, 10 + k).pin_memory(), plan)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert all(torch.isfinite(v).item() for v in terms.values())


@needs_cuda
def test_fp32_iterations_on_cuda_agree_with_the_cpu(tmp_path, exact_fp32):
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    # No layer noise (drawn on the device, so it differs), TF32 off, and Adam's eps raised: gradients
    # that are exactly zero in exact arithmetic would otherwise turn float-order noise into full steps.
    over = {"precision": "fp32", "layer_noise": False, "adam_eps": 1e-4}
    states = {}
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        trainer = Trainer(tiny_config(device, **over), data, tmp_path / device, progress=False)
        assert trainer.device.type == device
        for k, samples in enumerate((0, 12, 20, 40)):  # phases 0-2, fading in, then the pool on
            plan = step_plan(trainer.cfg, samples)
            trainer.train_iteration(batch(plan, k), plan)
        states[device] = {f"{name}.{k}": v.detach().float().cpu()
                          for name, m in (("encoder", trainer.encoder), ("decoder", trainer.decoder))
                          for k, v in m.state_dict().items()}
    assert states["cpu"].keys() == states["cuda"].keys()
    for k, v in states["cpu"].items():
        assert torch.allclose(v, states["cuda"][k], rtol=1e-3, atol=1e-4), k


@needs_cuda
def test_bf16_iterations_through_fades_on_cuda(tmp_path):
    # Mid-fade, CUDA autocast gave the decoder's two image paths different dtypes (an H200 run died at
    # the first fade); every phase and α here must give finite losses.
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    trainer = Trainer(tiny_config("cuda"), data, tmp_path / "run", progress=False)
    for k, samples in enumerate((0, 12, 20, 40)):  # phases 0-2, fading in, then the pool on
        plan = step_plan(trainer.cfg, samples)
        terms = trainer.train_iteration(batch(plan, k), plan)
        assert all(torch.isfinite(v).item() for v in terms.values()), (samples, terms)
    assert [step_plan(trainer.cfg, s)["alpha"] for s in (12, 20)] == [0.5, 0.5]


def stable_iterations(trainer, n, first_seed=0):
    """n iterations at phase 2, α = 1 (the pool and both mixes in use): what CUDA graphs capture."""
    plan = step_plan(trainer.cfg, 40)
    assert plan["phase"] == 2 and plan["alpha"] == 1.0
    for k in range(n):
        terms = trainer.train_iteration(batch(plan, first_seed + k).pin_memory(), plan)
    return terms


@needs_cuda
def test_cuda_graph_steps_agree_with_eager_steps(tmp_path, exact_fp32):
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    over = {"precision": "fp32", "layer_noise": False, "adam_eps": 1e-4}
    results = {}
    for graphs in (False, True):
        torch.manual_seed(0)
        trainer = Trainer(tiny_config("cuda", cuda_graphs=graphs, **over), data, tmp_path / f"g{graphs}",
                          progress=False)
        for k, samples in enumerate((0, 12, 20)):  # phases 0-2 with fades, eager either way
            plan = step_plan(trainer.cfg, samples)
            trainer.train_iteration(batch(plan, k), plan)
        stable_iterations(trainer, 16)
        if graphs:
            assert trainer.graphs.captures >= 2 and trainer.graphs.replays >= 4 and not trainer.graphs.failed
        results[graphs] = {**{f"{name}.{k}": v.detach().float().cpu()
                              for name, m in (("encoder", trainer.encoder), ("decoder", trainer.decoder),
                                              ("ema", trainer.ema))
                              for k, v in m.state_dict().items()},
                           "pool": trainer.pool.images.cpu()}
    for k, v in results[False].items():
        assert torch.allclose(v, results[True][k], rtol=1e-3, atol=1e-4), k


@needs_cuda
def test_replayed_graph_steps_never_synchronise_with_the_host(tmp_path):
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    trainer = Trainer(tiny_config("cuda", cuda_graphs=True), data, tmp_path / "run", progress=False)
    stable_iterations(trainer, 16)  # warm-up and capture of every step variant of phase 2
    assert len(trainer.graphs.graphs) == 4 and not trainer.graphs.failed  # {encoder, decoder} × crossover {1, 2}
    replays = trainer.graphs.replays
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        terms = stable_iterations(trainer, 4, first_seed=100)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert trainer.graphs.replays == replays + 8
    assert all(torch.isfinite(v).item() for v in terms.values())


@needs_cuda
def test_bf16_graph_training_through_phases_with_layer_noise(tmp_path):
    # Phase 0 from graphs, the fades of phases 1 and 2 eagerly, then phase 2 at α = 1 from new graphs
    # (each phase change drops the graphs); new codes and new noise at every replay.
    data = write_random_images(tmp_path / "data", 12, 16, seed=1)
    trainer = Trainer(tiny_config("cuda", cuda_graphs=True), data, tmp_path / "run", progress=False)
    recon = []
    for samples in [0] * 8 + [8, 12, 16, 20] + [24] * 16:
        plan = step_plan(trainer.cfg, samples)
        terms = trainer.train_iteration(batch(plan, samples), plan)
        assert all(torch.isfinite(v).item() for v in terms.values()), (samples, terms)
        recon.append(terms["recon"].item())
    assert trainer.graphs.captures >= 4 and not trainer.graphs.failed  # both steps at phase 0, some at phase 2
    assert {dict(k[3:])["phase"] for k in trainer.graphs.graphs} == {2}  # phase 0's were dropped
    assert len(set(recon[-4:])) == 4  # the graph's outputs are not frozen
