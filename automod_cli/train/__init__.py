"""Training: presets and schedule (``schedule``), loss terms (``losses``), training state on disk
(``state``), the trainer (``loop``) and its parts: the networks' training-time pieces (``networks``),
the image pool (``pool``), several processes (``distributed``), CUDA graphs (``graphs``) and compiled
blocks (``compiled``).

    from automod_cli.train import run_training
    from automod_cli.train.schedule import resolve_config
    run_training(resolve_config("toy64", {"duration": "100k"}), "faces/", "runs/toy64")
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable


def run_training(cfg: dict, data: str | Path, run_dir: str | Path, overwrite: bool = False,
                 command: str | None = None, say: Callable[[str], None] | None = None,
                 progress: bool = True) -> int:
    """Train (or resume) a run; returns a process exit code (0 done, 130/143 interrupted and saved).

    Joins the torchrun process group when launched by torchrun (one process per device).
    """
    import torch

    from ..devices import resolve_device
    from .distributed import init_distributed, shutdown_distributed
    from .loop import Interrupted, Trainer

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))  # results are bit-exact for a fixed thread count
    rank, world, local_rank = init_distributed(cfg["device"])
    device = resolve_device(cfg["device"])
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    try:
        trainer = Trainer(cfg, data, run_dir, device=device, command=command, say=say, progress=progress)
        try:
            samples = trainer.run(overwrite=overwrite)
        except Interrupted as e:
            if rank == 0 and say:
                say(f"interrupted at {trainer.samples} samples; training state saved in {trainer.state_path} "
                    f"(re-run the same command to resume)")
            return 130 if e.signum == signal.SIGINT else 143
        if rank == 0 and say:
            say(f"trained to {samples} samples; newest model: {Path(run_dir) / 'model.safetensors'}")
        return 0
    finally:
        if world > 1:
            shutdown_distributed()
