"""``automod train DATA --out RUN_DIR``: progressive automodulator training (resumable, multi-process)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .common import OverwriteOpt, say


def register(app: typer.Typer) -> None:
    @app.command("train")
    def train(
        data: Path = typer.Argument(..., help="Training images: a folder (recursive), a .zip or an LMDB."),
        out: Path = typer.Option(..., "--out", "-o", help="Run directory (re-running the same command resumes)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="ffhq256, ffhq512, celebahq256, lsun-cars256, "
                                             "lsun-bedrooms256 (the reference's runs), toy32 or toy64 (CPU). "
                                             "Default: the one preset at the data's resolution, else an error "
                                             "listing them."),
        resolution: Optional[int] = typer.Option(None, "--resolution", help="Top resolution (cuts the schedule)."),
        duration: Optional[str] = typer.Option(None, "--duration", help="Samples to train for, e.g. 30M, 500k."),
        checkpoint_every: Optional[str] = typer.Option(None, "--checkpoint-every", help="Samples between "
                                                       "checkpoints and snapshots, e.g. 500k."),
        seed: Optional[int] = typer.Option(None, "--seed", help="Random seed."),
        width: Optional[float] = typer.Option(None, "--width", help="Channel multiplier (1 = the paper)."),
        latent_dim: Optional[int] = typer.Option(None, "--latent-dim", help="Code size (512 in the paper)."),
        variant: Optional[str] = typer.Option(None, "--variant", help="Decoder channels: large or small."),
        batch_size: Optional[int] = typer.Option(None, "--batch-size", "-b", help="Global batch at every phase."),
        fade: Optional[str] = typer.Option(None, "--fade", help="Fade-in length in samples, e.g. 1.2M."),
        lr: Optional[float] = typer.Option(None, "--lr", help="Learning rate at every phase."),
        loss: Optional[str] = typer.Option(None, "--loss", help="Reconstruction loss: robust or l1."),
        workers: Optional[int] = typer.Option(None, "--workers", help="Data-loading worker processes."),
        mirror: Optional[bool] = typer.Option(None, "--mirror/--no-mirror", help="Random horizontal flips."),
        log_every: Optional[str] = typer.Option(None, "--log-every", help="Samples between log lines."),
        grid_every: Optional[str] = typer.Option(None, "--grid-every", help="Samples between image grids."),
        device: Optional[str] = typer.Option(None, "--device", help="cpu, cuda, cuda:N or auto."),
        threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (0: PyTorch's default; 1 is "
                                              "often fastest on a busy machine)."),
        precision: Optional[str] = typer.Option(None, "--precision", help="fp32 (the paper presets; TF32 "
                                                "convolutions on CUDA), bf16 (autocast), or auto (bf16 on CUDA, "
                                                "fp32 on CPU; the CPU presets)."),
        metrics: Optional[str] = typer.Option(None, "--metrics", help="Metrics during training: fid (EMA samples "
                                              "against the training data, as `automod fid`), or none."),
        metrics_every: Optional[str] = typer.Option(None, "--metrics-every", help="Samples between metric "
                                                    "evaluations, e.g. 500k (and one at the end)."),
        metrics_n: Optional[str] = typer.Option(None, "--metrics-n", help="Images per evaluation, e.g. 10k."),
        init: Optional[str] = typer.Option(None, "--init", help="Start from this model (a file or a cached "
                                           "model's name, as -m; its weights, at the top phase with α = 1) "
                                           "instead of from scratch: fine-tuning."),
        cuda_graphs: Optional[bool] = typer.Option(None, "--cuda-graphs/--no-cuda-graphs", help="Replay captured "
                                                   "CUDA graphs of the training steps (CUDA, one process; "
                                                   "much faster for small models). Off by default."),
        compile_blocks: Optional[bool] = typer.Option(None, "--compile/--no-compile", help="torch.compile each "
                                                      "network block: fused elementwise work, 1.45x (fp32) to "
                                                      "1.5x (bf16, AdaIN then in fp32) the images/s of small "
                                                      "models on a CPU; compiling takes a minute or more at each "
                                                      "new resolution and batch. Off by default."),
        settings: List[str] = typer.Option([], "--set", help="Any other setting, KEY=VALUE (VALUE as JSON), e.g. "
                                           "--set 'phase_starts=[0,20000,40000]'. Repeatable."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the resolved configuration (JSON, on stdout) "
                                     "and the phase table (stderr), and exit."),
        overwrite: bool = OverwriteOpt,
    ) -> None:
        """Train an automodulator, growing from 4x4 to the target resolution."""
        from ..errors import UserError
        from ..hub.cache import resolve_model
        from ..train import report
        from ..train.schedule import resolve_config

        overrides = {"resolution": resolution, "duration": duration, "checkpoint_every": checkpoint_every,
                     "seed": seed, "width": width, "latent_dim": latent_dim, "variant": variant,
                     "batch": batch_size, "fade": fade, "lr": lr, "loss": loss, "workers": workers,
                     "mirror": mirror, "log_every": log_every, "grid_every": grid_every, "device": device,
                     "threads": threads, "precision": precision, "cuda_graphs": cuda_graphs,
                     "compile": compile_blocks,
                     "init": str(resolve_model(init)) if init is not None else None, "metrics": metrics,
                     "metrics_every": metrics_every, "metrics_n": metrics_n}
        for item in settings:
            key, sep, value = item.partition("=")
            if not sep:
                raise UserError(f"--set takes KEY=VALUE, got '{item}'")
            try:
                overrides[key.strip()] = json.loads(value)
            except json.JSONDecodeError:
                overrides[key.strip()] = value
        if preset is None:
            preset, why = report.choose_preset(report.probe_data(data))
            say(why)
        cfg = resolve_config(preset, overrides)
        if dry_run:
            print(json.dumps(cfg, indent=2, sort_keys=True))
            what, departs = report.departures(cfg, "cuda" if cfg["device"].startswith("cuda") else "cpu")
            say(f"{what}; " + ("departs from the paper in: " + "; ".join(departs) if departs
                               else "no departures from the paper"))
            for line in report.phase_table(cfg):
                say(line)
            warning = report.duration_warning(cfg)
            if warning:
                say(warning)
            return
        from ..train import run_training

        argv = sys.argv[1:]
        command = "automod " + " ".join(shlex.quote(a) for a in argv) if "train" in argv else None
        code = run_training(cfg, data, out, overwrite=overwrite, command=command, say=say)
        if code:
            raise typer.Exit(code=code)
