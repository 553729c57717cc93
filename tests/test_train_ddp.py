"""Two CPU processes (gloo) with the global batch split between them train like one process."""

import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file

from automod_cli.train.distributed import shutdown_distributed
from automod_cli.train.lock import RunDirectoryBusy, RunLock
from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import resolve_config
from conftest import write_random_images

# Layer noise off: each process draws its own noise, so with noise the two runs differ by design.
# Adam's eps raised: some gradients are exactly zero in exact arithmetic (e.g. biases of block 0,
# whose constant input makes the following instance norm cancel them), and Adam would turn their
# float-order noise into full-size steps of random sign.
# The adaptive robust loss, so that its learned parameters are averaged across processes too.
OVERRIDES = {"loss": "robust", "resolution": 8, "width": 1 / 64, "latent_dim": 16, "phase_starts": [0, 16],
             "fade": 16, "duration": 48, "batch": 8, "workers": 0, "device": "cpu", "log_every": 16, "grid_every": 10**6,
             "checkpoint_every": 48, "layer_noise": False, "adam_eps": 1e-4, "seed": 5, "pool_size": 6}


def make_images(folder, n=20, size=8):
    return write_random_images(folder, n, size, seed=2)


def _worker(rank, world, rendezvous, data, run_dir):
    torch.set_num_threads(1)
    # A file rendezvous: no TCP port to pick, so no race with other processes for a free one.
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        Trainer(resolve_config("toy32", OVERRIDES), data, run_dir, progress=False).run()
    finally:
        shutdown_distributed()


def test_two_gloo_processes_match_one(tmp_path):
    data = make_images(tmp_path / "data")
    mp.spawn(_worker, args=(2, str(tmp_path / "rendezvous"), str(data), str(tmp_path / "two")), nprocs=2, join=True)
    assert not (tmp_path / "two" / "train.lock").exists()  # the job's ranks shared one lock, released at the end
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        Trainer(resolve_config("toy32", OVERRIDES), data, tmp_path / "one", progress=False).run()
    finally:
        torch.set_num_threads(before)
    one = load_file(str(tmp_path / "one" / "state" / "state.safetensors"))
    two = load_file(str(tmp_path / "two" / "state" / "state.safetensors"))
    assert one.keys() == two.keys()
    # 6 iterations over phases 0 and 1 (with the pool, style mixing and a fade): equal up to float order
    for prefix in ("encoder.", "decoder.", "ema.", "robust."):
        keys = [k for k in one if k.startswith(prefix)]
        assert keys
        for k in keys:
            assert torch.allclose(one[k], two[k], rtol=1e-4, atol=1e-5), k
    # and the runs did train: the weights left their initial values
    fresh = Trainer(resolve_config("toy32", OVERRIDES), data, tmp_path / "fresh", progress=False)
    init = {f"decoder.{k}": v for k, v in fresh.decoder.state_dict().items()}
    assert sum(not torch.equal(init[k], one[k]) for k in init) > len(init) // 2


def _control_worker(rank, world, rendezvous):
    from automod_cli.train import distributed

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        # Pretend the default group is NCCL: the host-side agreements must then use a group of their own
        # (gloo, CPU tensors), so that they never read a GPU tensor back.
        real = dist.get_backend
        dist.get_backend = lambda group=None: "nccl"
        try:
            group = distributed.control_group()
        finally:
            dist.get_backend = real
        assert group is not dist.group.WORLD
        assert distributed.control_group() is group  # made once per world
        # rank 1's parameter got no gradient: it gets zeros, and the other is averaged
        a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(3))
        a.grad = torch.full((2,), float(rank + 1))
        if rank == 0:
            b.grad = torch.full((3,), 4.0)
        distributed.average_gradients([a, b])
        assert torch.equal(a.grad, torch.full((2,), 1.5)) and torch.equal(b.grad, torch.full((3,), 2.0))
    finally:
        shutdown_distributed()


def test_host_side_agreements_use_a_gloo_group_beside_nccl(tmp_path):
    mp.spawn(_control_worker, args=(2, str(tmp_path / "rendezvous")), nprocs=2, join=True)


def _busy_worker(rank, world, rendezvous, data, run_dir, holder_pid):
    torch.set_num_threads(1)  # (as _worker: two ranks on two cores)
    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=world)
    try:
        try:
            Trainer(resolve_config("toy32", OVERRIDES), data, run_dir, progress=False).run()
        except RunDirectoryBusy as e:
            assert f"PID {holder_pid} " in str(e), str(e)  # every rank stops, with rank 0's message
        else:
            raise AssertionError(f"rank {rank} trained in a locked run directory")
    finally:
        shutdown_distributed()


def test_every_rank_stops_when_another_trainer_holds_the_run_directory(tmp_path):
    data = make_images(tmp_path / "data")
    holder = RunLock(tmp_path / "run")
    holder.acquire()
    try:
        mp.spawn(_busy_worker, args=(2, str(tmp_path / "rendezvous"), str(data), str(tmp_path / "run"), os.getpid()),
                 nprocs=2, join=True)
    finally:
        holder.release()
    assert not (tmp_path / "run" / "config.json").exists()
