"""The trainer: the automodulator training game (spec §2): one encoder step, then one decoder step, per iteration.

``Trainer(cfg, data, run_dir)`` holds the encoder φ, the live decoder θ, its EMA, the adaptive
robust-loss parameters, both Adam optimisers, the image pool, the trainer's random generator and
the data stream; ``Trainer.run()`` trains until ``cfg["duration"]`` samples and writes the run
directory (config.json, log.jsonl, state/, model.safetensors, grids/).

Exactness: every random draw comes from the trainer's CPU generator (codes, crossover blocks, pool
decisions) or torch's global RNG (layer noise), both saved with the state; the data order is a
pure function of (seed, position). So a resumed run repeats an uninterrupted one bit for bit on a
CPU. Several processes: each rank draws the *global* batch of codes and keeps its slice; batch
statistics (KL) see the whole batch through a differentiable all-gather; gradients are averaged
across ranks after each backward; the image pool is kept, identical, on every rank.

Spectral norm: the encoder always runs in eval mode (frozen ``u`` inside the forward) and the one
power iteration the reference does per training forward is applied right after each encoder
forward (``advance_power_iteration``): the same numbers, and no in-place update of a tensor that
autograd saved.
"""

from __future__ import annotations

import copy
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F

from ..devices import bf16_warning, resolve_device
from ..errors import UserError, WriteError
from ..io.atomic import size_text, write_text_atomic
from ..model import Automodulator, ModelConfig
from ..model.decoder import Decoder
from ..model.encoder import Encoder
from . import losses
from .distributed import average_gradients, broadcast_text, control_group, dist_info, gather_batch
from .compiled import compile_blocks, compile_failure
from .graphs import StepGraphs
from .lock import RunDirectoryBusy, RunLock
from .networks import advance_power_iteration, code_stack_mixed, run_decoder
from .pool import ImagePool
from .report import resolved_precision
from .schedule import config_differences, step_plan
from .state import (STATE_NAME, load_module, load_state, module_tensors, optimizer_from_flat, optimizer_to_flat,
                    rng_restore, rng_snapshot, save_state)

E_TERMS = ("kl_real", "kl_fake", "recon", "kl_gap", "loss_e", "real_code_cos")
D_TERMS = ("kl_dec", "cos", "consistency", "loss_d")
TERMS = E_TERMS + D_TERMS


class NonFiniteLoss(UserError):
    exit_code = 4


class Interrupted(Exception):
    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


# ----------------------------------------------------------------------------------------------
# The trainer


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


class Trainer:
    def __init__(self, cfg: dict, data: str | Path, run_dir: str | Path, device: torch.device | str | None = None,
                 command: str | None = None, overwrite: bool = False, say: Callable[[str], None] | None = None,
                 progress: bool = True):
        from ..data.datasets import ImageFolderDataset, make_loader

        self.cfg = cfg
        self.run_dir = Path(run_dir)
        # The device is cfg["device"] unless given (run_training gives each torchrun rank its own GPU).
        self.device = resolve_device(cfg["device"]) if device is None else torch.device(device)
        self.command = command
        self.rank, self.world = dist_info()
        self.is_main = self.rank == 0
        self.say = say or (lambda msg: print(msg, file=sys.stderr))
        self.show_progress = progress
        self.cuda = self.device.type == "cuda"
        self.bf16 = resolved_precision(cfg, self.device.type) == "bf16"  # bf16 autocast (_autocast)
        # Channels-last convolutions are the fast path for bf16 on tensor cores, and for bf16 on a CPU too
        # (oneDNN: toy64 width 1/8 at 64², batch 32, no layer noise: 26.7 -> 34 images/s on a 2-core Xeon with
        # AMX; the full-width 32² iteration of benchmarks/bench_train.py: 3.6 -> 3.0 s, with layer noise kept in
        # bf16 too, model/layers.py). fp32 on a CPU keeps the default layout, whose conv backward is the more
        # accurate there (see model/layers.py: channels_last); bf16's own rounding is far coarser than that
        # difference.
        self.channels_last = self.cuda or self.bf16

        torch.manual_seed(cfg["seed"])
        self.model_config = ModelConfig(resolution=cfg["resolution"], variant=cfg["variant"], width=cfg["width"],
                                        latent_dim=cfg["latent_dim"])
        mc = self.model_config
        self.encoder = Encoder(mc).to(self.device).eval()  # eval: see the module docstring (spectral norm)
        self.decoder = Decoder(mc).to(self.device).train()
        if self.channels_last:
            self.encoder.to(memory_format=torch.channels_last)
            self.decoder.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.decoder).eval().requires_grad_(False)
        if cfg["compile"]:  # after the EMA copy: the EMA decoder runs eagerly (a few no-grad calls)
            compile_blocks(self.encoder, self.decoder, self.bf16)
        if cfg["loss"] == "robust":
            self.robust = torch.nn.ModuleList(losses.AdaptiveRobustLoss((3, r, r)) for r in mc.resolutions).to(self.device)
        else:
            self.robust = torch.nn.ModuleList()
        self.graphs = self._step_graphs()
        betas = tuple(cfg["adam_betas"])
        self.opt_e = torch.optim.Adam(list(self.encoder.parameters()) + list(self.robust.parameters()),
                                      lr=cfg["lr"][0], betas=betas, eps=cfg["adam_eps"])
        self.opt_d = torch.optim.Adam(self.decoder.parameters(), lr=cfg["lr"][0], betas=betas, eps=cfg["adam_eps"])
        self._set_capturable()
        self.generator = torch.Generator().manual_seed(cfg["seed"] * 7919 + 17)
        self.pool = ImagePool(cfg["pool_size"])
        self.pool_phase = 0
        self.samples = 0
        self.iteration = 0
        self.wall_time = 0.0
        self.log_lines: list[str] = []
        self.init_from: dict | None = None  # the model file the run started from (cfg["init"]), if any
        self.saved_samples: int | None = None  # where the newest state on disk stands

        gb = cfg["batch"][0]
        for b in cfg["batch"]:
            if b % self.world:
                raise UserError(f"global batch {b} does not split evenly across {self.world} processes")
        self.dataset = ImageFolderDataset(data, resolution=4, mirror=cfg["mirror"],
                                          split=None if cfg["split"] == "all" else cfg["split"],
                                          test_fraction=cfg["test_fraction"], seed=cfg["seed"])
        self.data_root = Path(data)
        self._loader_state: dict | None = None
        self._make_loader = lambda state: make_loader(
            self.dataset, gb // self.world, workers=cfg["workers"], seed=cfg["seed"], rank=self.rank,
            world_size=self.world, resolution=4, state=state)
        self.stream = None
        self._grid_images: torch.Tensor | None = None
        self.stop_signal: int | None = None
        self.tb = None

    def _step_graphs(self) -> StepGraphs | None:
        if not self.cfg.get("cuda_graphs"):
            return None
        why = "needs a CUDA device" if not self.cuda else "runs in one process only" if self.world > 1 else None
        if why:
            if self.is_main:
                self.say(f"cuda_graphs {why}: training without CUDA graphs")
            return None
        return StepGraphs(say=self.say)

    def _set_capturable(self) -> None:
        """With CUDA graphs Adam keeps its step count on the device (a captured step cannot read a host
        number). Set after loading too: a state saved with graphs may be resumed without them (on a CPU,
        which capturable Adam refuses), and the other way round."""
        on = self.graphs is not None
        for opt in (self.opt_e, self.opt_d):
            for group in opt.param_groups:
                group["capturable"] = on
            for state in opt.state.values():
                if "step" in state:
                    step = torch.as_tensor(state["step"], dtype=torch.float32)
                    state["step"] = step.to(self.device) if on else step.cpu()

    # -- state ------------------------------------------------------------------------------------
    @property
    def state_path(self) -> Path:
        return self.run_dir / "state" / STATE_NAME

    def state_dict(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        tensors: dict[str, torch.Tensor] = {}
        tensors.update(module_tensors("encoder", self.encoder))
        tensors.update(module_tensors("decoder", self.decoder))
        tensors.update(module_tensors("ema", self.ema))
        tensors.update(module_tensors("robust", self.robust))
        t_e, m_e = optimizer_to_flat(self.opt_e, "e")
        t_d, m_d = optimizer_to_flat(self.opt_d, "d")
        tensors.update(t_e)
        tensors.update(t_d)
        if self.pool.count:
            tensors["pool.images"] = self.pool.images[: self.pool.count]
        t_rng, m_rng = rng_snapshot(self.generator)
        tensors.update(t_rng)
        meta = {"config": self.cfg, "samples": self.samples, "iteration": self.iteration,
                "wall_time": self.wall_time, "opt_e": m_e, "opt_d": m_d, "rng": m_rng,
                "pool": {"size": self.pool.size, "phase": self.pool_phase},
                "loader": self.stream.state_dict() if self.stream is not None else self._loader_state,
                "skipped_files": sorted(self.dataset.skipped_files), "init_from": self.init_from}
        return tensors, meta

    def load_state_dict(self, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
        load_module("encoder", self.encoder, tensors)
        load_module("decoder", self.decoder, tensors)
        load_module("ema", self.ema, tensors)
        load_module("robust", self.robust, tensors)
        optimizer_from_flat(self.opt_e, "e", tensors, meta["opt_e"])
        optimizer_from_flat(self.opt_d, "d", tensors, meta["opt_d"])
        self._set_capturable()
        self.pool = ImagePool(meta["pool"]["size"])
        self.pool_phase = meta["pool"]["phase"]
        if "pool.images" in tensors:
            stored = tensors["pool.images"]
            self.pool.ensure(tuple(stored.shape[1:]), self.device)
            self.pool.images[: len(stored)] = stored.to(self.device)
            self.pool.count = len(stored)
        rng_restore(self.generator, tensors, meta["rng"])
        self.samples, self.iteration = meta["samples"], meta["iteration"]
        self.saved_samples = self.samples
        self.wall_time = meta["wall_time"]
        self._loader_state = meta["loader"]
        self.dataset.skipped_files.update(meta.get("skipped_files", []))
        self.init_from = meta.get("init_from")

    def save_checkpoint(self) -> None:
        if not self.is_main:
            return
        tensors, meta = self.state_dict()
        model = self.snapshot()
        try:
            save_state(self.state_path, tensors, meta)
            self.saved_samples = self.samples  # the state resumes from here even if the model file fails
            model.save(self.run_dir / "model.safetensors", overwrite=True)
        except WriteError as e:
            raise self._checkpoint_failed(e, tensors, model) from None

    def _checkpoint_failed(self, error: WriteError, tensors: dict[str, torch.Tensor],
                           model: Automodulator) -> WriteError:
        """The write error, and what it means for the run: it stops with its last good state on disk and,
        on a full disk, how much space one checkpoint takes (each file is written beside the previous one
        before it replaces it, so that much must be free)."""
        import errno
        import shutil

        last = (f"the last good state is at {self.saved_samples:,} samples" if self.saved_samples is not None
                else "no state was saved yet")
        text = f"{error}; training stopped, {last}"
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            need = sum(t.numel() * t.element_size() for t in tensors.values())
            need += sum(p.numel() * p.element_size() for p in model.state_dict().values())
            free = shutil.disk_usage(self.run_dir).free
            text += (f"; a checkpoint needs about {size_text(need)} free in {self.run_dir} ({size_text(free)} "
                     "free now): free some space and run the same command to resume")
        else:
            text += "; run the same command to resume once the cause is fixed"
        return WriteError(text, errno=error.errno)

    def snapshot(self) -> Automodulator:
        """A model file's view of the run: the encoder and the EMA decoder."""
        with torch.random.fork_rng(devices=[]):  # building it draws initial weights: keep the RNG stream
            m = Automodulator(self.model_config)
        m.encoder.load_state_dict(self.encoder.state_dict())
        m.decoder.load_state_dict(self.ema.state_dict())
        plan = step_plan(self.cfg, self.samples)
        m.provenance = {"preset": self.cfg["preset"], "training_command": self.command,
                        "samples_seen": self.samples, "wall_time_s": round(self.wall_time, 1),
                        "seed": self.cfg["seed"], "git_commit": git_commit(), "trained_phase": plan["phase"],
                        "trained_resolution": plan["resolution"], "alpha": plan["alpha"],
                        "data": str(self.data_root), "processes": self.world}
        if self.init_from:
            m.provenance["init_from"] = self.init_from
        return m

    def init_from_model(self, path: str | Path) -> None:
        """Start from a model file instead of from scratch: its encoder, and its (EMA) decoder as both the
        live decoder and the EMA, at the top phase with α = 1; the optimisers, robust-loss parameters and
        image pool start fresh. The sample count starts at that point of the schedule, so ``duration``
        is where the run stops on the same scale as any other run's."""
        from ..io.modelfile import file_sha256

        model = Automodulator.load(path)
        mine, theirs = self.model_config.to_dict(), model.config.to_dict()
        diff = [k for k in mine if mine[k] != theirs.get(k)]
        if diff:
            raise UserError("the init model does not match this run (" + ", ".join(
                f"{k}: model {theirs.get(k)!r}, run {mine[k]!r}" for k in diff) + "); give the run the model's "
                "settings (--resolution, --width, --latent-dim, --variant)", path)
        start = self.cfg["phase_starts"][-1] + self.cfg["fade"]
        if start >= self.cfg["duration"]:
            raise UserError(f"a run from an init model starts at {start} samples (the top phase at α = 1); "
                            f"--duration {self.cfg['duration']} leaves nothing to train")
        self.encoder.load_state_dict(model.encoder.state_dict())
        self.decoder.load_state_dict(model.decoder.state_dict())
        self.ema.load_state_dict(model.decoder.state_dict())
        self.samples = start
        self.init_from = {"path": str(path), "sha256": file_sha256(path), "provenance": model.provenance}

    def restore_or_start(self, overwrite: bool) -> bool:
        """Resume from the run directory when it holds a state; returns True when resuming."""
        cfg_path = self.run_dir / "config.json"
        if self.state_path.exists() and not overwrite:
            tensors, meta = load_state(self.state_path)
            old = meta["config"]
            diff = config_differences(old, self.cfg)
            if diff:
                detail = ", ".join(f"{k}: {old.get(k)!r} -> {self.cfg.get(k)!r}" for k in diff[:4])
                raise UserError(f"this run was started with another configuration ({detail}); use the same "
                                f"settings to resume, another --out, or --overwrite to start again", self.run_dir)
            self.load_state_dict(tensors, meta)
            resumed = True
        else:
            if not overwrite and cfg_path.exists() and not self.state_path.exists():
                old = json.loads(cfg_path.read_text())
                diff = config_differences(old, self.cfg)
                if diff:
                    raise UserError("this run directory holds another run's config.json (differs in "
                                    f"{', '.join(diff[:4])}); use another --out or --overwrite", self.run_dir)
            resumed = False
            if self.cfg.get("init"):
                self.init_from_model(self.cfg["init"])
        if self.is_main:
            write_text_atomic(cfg_path, json.dumps(self.cfg, indent=2, sort_keys=True) + "\n", overwrite=True)
            log_path = self.run_dir / "log.jsonl"
            if resumed and log_path.exists():  # drop lines written after the state we resume from
                for line in log_path.read_text().splitlines():
                    try:
                        if json.loads(line)["samples"] <= self.samples:
                            self.log_lines.append(line)
                    except (json.JSONDecodeError, KeyError):
                        continue
        return resumed

    # -- one iteration ------------------------------------------------------------------------------
    def _codes(self, n: int) -> torch.Tensor:
        return F.normalize(torch.randn(n, self.cfg["latent_dim"], generator=self.generator), dim=1)

    def _local(self, t: torch.Tensor) -> torch.Tensor:
        n = t.shape[0] // self.world
        return t[self.rank * n:(self.rank + 1) * n]

    def _to_device(self, t: torch.Tensor) -> torch.Tensor:
        """A host tensor drawn for this step (codes, masks, row indices) onto the device. On CUDA through
        pinned memory and without blocking: a plain copy from pageable memory waits for the GPU to
        finish all queued work, a host synchronisation per call."""
        if not self.cuda:
            return t.to(self.device)
        return t.pin_memory().to(self.device, non_blocking=True)

    def _autocast(self):
        """bf16 autocast: on CUDA by default; on a CPU only with precision=bf16 (AVX-512 BF16 CPUs run
        bf16 matmuls several times faster than fp32, at bf16's rounding)."""
        # No cast cache under CUDA graphs: cached bf16 weights would outlive the captured step.
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16,
                              cache_enabled=self.graphs is None)

    def _check_finite(self, terms: dict[str, torch.Tensor]) -> None:
        """On a CPU every step is checked before it is applied. On CUDA that would be a host sync per
        step, so the accumulated log values are checked instead (``_check_accumulated``) at every
        log line and before every checkpoint: a checkpoint never holds a non-finite state."""
        if self.cuda:
            return
        values = torch.stack([terms[k].detach().float() for k in terms])
        if not bool(torch.isfinite(values).all()):
            bad = next(k for k in terms if not math.isfinite(float(terms[k].detach())))
            raise NonFiniteLoss(f"the loss term '{bad}' is not finite at {self.samples} samples; the step was "
                                f"not applied and the last good state is kept in {self.state_path}")

    def _check_accumulated(self, acc: torch.Tensor) -> None:
        finite = torch.isfinite(acc).tolist()
        if not all(finite):
            bad = TERMS[finite.index(False)]
            raise NonFiniteLoss(f"the loss term '{bad}' became non-finite before {self.samples} samples; "
                                f"the last good state is kept in {self.state_path}")

    def _local_count(self, n_first: int, batch: int) -> int:
        """How many of this rank's rows are among the first ``n_first`` rows of the global ``batch``."""
        b = batch // self.world
        return max(0, min(b, n_first - self.rank * b))

    def _step(self, kind: str, compute: Callable[..., dict[str, torch.Tensor]], key: tuple,
              inputs: dict[str, torch.Tensor], plan: dict) -> dict[str, torch.Tensor]:
        """Run one step's device work: eagerly, or (CUDA graphs on, α = 1) as a replayed graph of it."""
        if self.graphs is not None and plan["alpha"] >= 1.0:
            return self.graphs.run((kind, *key, *sorted(plan.items())), compute, inputs)
        return compute(**inputs)

    def encoder_step(self, x_real: torch.Tensor, plan: dict) -> dict[str, torch.Tensor]:
        """φ's step: fakes (25% style-mixed, pooled once α = 1), KLs, reconstruction, KL gap.

        Every random choice is drawn here, on the host; ``_encoder_compute`` does the device work."""
        cfg, p, G = self.cfg, plan["phase"], plan["batch"]
        z = self._codes(G)
        z_b = self._codes(G)
        cross = int(torch.randint(1, p + 1, (1,), generator=self.generator)) if p > 0 else None
        inputs = {"x_real": x_real, "z": self._to_device(self._local(z)), "z_b": self._to_device(self._local(z_b))}
        if plan["alpha"] >= 1.0 and self.pool.size > 0:
            r = plan["resolution"]
            self.pool.ensure((3, r, r), self.device)
            out_rows, held_rows = self.pool.draw(G, self.generator)
            inputs.update(pool_out=self._to_device(out_rows), pool_held=self._to_device(held_rows))
        m = self._local_count(int(G * cfg["e_mix_fraction"]), G) if cross is not None else 0  # train.py:198, 202
        compute = lambda **t: self._encoder_compute(plan, cross, m, **t)  # noqa: E731
        return self._step("encoder", compute, (cross, m), inputs, plan)

    def _encoder_compute(self, plan: dict, cross: int | None, n_mixed: int, x_real: torch.Tensor, z: torch.Tensor,
                         z_b: torch.Tensor, pool_out: torch.Tensor | None = None,
                         pool_held: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        p = plan["phase"]
        self.decoder.requires_grad_(False)
        try:
            terms = self._encoder_loss(x_real, plan, z, z_b, cross, n_mixed, pool_out, pool_held)
            self._check_finite(terms)
            self.opt_e.zero_grad(set_to_none=True)
            terms["loss_e"].backward()
            advance_power_iteration(self.encoder, p)  # after the backward (autograd saved u), before the step
        finally:
            self.decoder.requires_grad_(True)
        params = [q for g in self.opt_e.param_groups for q in g["params"]]
        average_gradients(params)
        self._set_lr(self.opt_e, plan["lr"])
        self.opt_e.step()
        return terms

    def _encoder_loss(self, x_real, plan, z, z_b, cross, n_mixed, pool_out, pool_held) -> dict[str, torch.Tensor]:
        cfg, p, alpha, noise = self.cfg, plan["phase"], plan["alpha"], self.cfg["layer_noise"]
        with torch.no_grad(), self._autocast():
            fakes = run_decoder(self.decoder, code_stack_mixed(z, z_b, n_mixed, cross, p + 1), p, alpha, noise)[0]
            fakes = fakes.float()
            if pool_out is not None:
                fakes = self._local(self.pool.apply(gather_batch(fakes, grad=False), pool_out, pool_held))
        b = x_real.shape[0]
        with self._autocast():
            codes = self.encoder(torch.cat([x_real, fakes]), p, alpha).float()
        z_real, z_fake = codes[:b], codes[b:]
        z_real_all = gather_batch(z_real)
        kl_real = losses.batch_kl(z_real_all)
        kl_fake = losses.batch_kl(gather_batch(z_fake))
        with self._autocast():
            recon_img = run_decoder(self.decoder, z_real, p, alpha, noise)[0]
        residual = recon_img.float() - x_real.float()
        recon = self.robust[p](residual) if cfg["loss"] == "robust" else losses.l1_loss(residual)
        gap = losses.kl_gap(kl_real, kl_fake, plan["margin"], cfg["kl_weight"])
        loss = cfg["kl_weight"] * kl_real + cfg["recon_weight"] * plan["match_x"] * recon + gap
        with torch.no_grad():  # a monitor of encoder collapse (losses.mean_pairwise_cosine), not a loss
            real_code_cos = losses.mean_pairwise_cosine(z_real_all)
        return {"kl_real": kl_real, "kl_fake": kl_fake, "recon": recon, "kl_gap": gap, "loss_e": loss,
                "real_code_cos": real_code_cos}

    def decoder_step(self, plan: dict, x_real: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """θ's step: 50% style-mixed fakes re-encoded; KL, code mismatch, scale consistency; then EMA.

        With ``decoder_recon_weight`` > 0 (the CPU presets only; the paper's game has 0) the decoder
        also gets a direct L1 pixel loss on reconstructions of the real batch, codes held fixed.
        Every random choice is drawn here, on the host; ``_decoder_compute`` does the device work.
        """
        cfg, p, G = self.cfg, plan["phase"], plan["batch"]
        z = self._codes(G)
        z_b = self._codes(G)
        cross = int(torch.randint(1, p + 1, (1,), generator=self.generator)) if p > 0 else None
        n_mixed = int(G * cfg["d_mix_fraction"]) if cross is not None else 0  # int(), as train.py:287
        inputs = {"z": self._to_device(self._local(z)), "z_b": self._to_device(self._local(z_b))}
        if x_real is not None and float(cfg.get("decoder_recon_weight", 0.0)) > 0:
            inputs["x_real"] = x_real
        m = self._local_count(n_mixed, G)
        compute = lambda **t: self._decoder_compute(plan, cross, n_mixed, m, **t)  # noqa: E731
        return self._step("decoder", compute, (cross, m), inputs, plan)

    def _decoder_compute(self, plan: dict, cross: int | None, n_mixed: int, m: int, z: torch.Tensor,
                         z_b: torch.Tensor, x_real: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """The decoder step's device work. The mixed rows are the first ``n_mixed`` of the global batch,
        ``m`` of them on this rank (a prefix of its rows)."""
        cfg, p, alpha, noise = self.cfg, plan["phase"], plan["alpha"], self.cfg["layer_noise"]
        G, n = plan["batch"], p + 1
        self.encoder.requires_grad_(False)
        if p > 0:
            self.decoder.to_rgb[p - 1].requires_grad_(False)
        with self._autocast():
            stack = code_stack_mixed(z, z_b, m, cross, n)
            fakes, h_cross = run_decoder(self.decoder, stack, p, alpha, noise, split=cross)
            z_hat = self.encoder(fakes, p, alpha).float()
        kl = losses.batch_kl(gather_batch(z_hat))
        # Per-sample terms: this rank's sum over the global count, times the world size (gradients are
        # averaged over ranks), so the result equals the single-process mean.
        cos = self.world * losses.cos_mismatch(z_hat[m:], z[m:], "sum") / (G - n_mixed)
        if m:
            # consistency_grad "all" (the reference, train.py:257-269 and 309): neither side is detached, so
            # the gradient reaches the blocks [0, j) through the re-decode θ_[0,j)(ẑ) and through the
            # target h = θ_[0,j)(z_A), and every block through the mixed image x̃. "image" (the CPU presets)
            # holds the target and the measuring blocks fixed, so the term can only be lowered by images
            # that carry z_A's coarse features, not by the coarse blocks learning to ignore the code.
            image_only = cfg["consistency_grad"] == "image"
            held = list(self.decoder.blocks[:cross].parameters()) if image_only else []
            for q in held:
                q.requires_grad_(False)
            try:
                with self._autocast():
                    h_again = self.decoder.features(z_hat[:m], 0, cross, noise=noise)
            finally:
                for q in held:
                    q.requires_grad_(True)
            cons = self.world * losses.consistency_mse(h_again.float(), h_cross[:m].float(), "sum",
                                                       hold_target=image_only) / (n_mixed * h_again[0].numel())
        else:
            cons = torch.zeros((), device=self.device)
        loss = cfg["kl_weight"] * kl + cfg["cos_weight"] * cos + cfg["consistency_weight"] * cons
        terms = {"kl_dec": kl, "cos": cos, "consistency": cons}
        if x_real is not None:
            with torch.no_grad(), self._autocast():
                z_real = self.encoder(x_real, p, alpha).float()
            with self._autocast():
                x_rec = run_decoder(self.decoder, z_real, p, alpha, noise)[0]
            terms["recon_dec"] = losses.l1_loss(x_rec.float() - x_real.float())
            loss = loss + float(cfg["decoder_recon_weight"]) * terms["recon_dec"]
        terms["loss_d"] = loss
        try:
            self._check_finite(terms)
            self.opt_d.zero_grad(set_to_none=True)
            loss.backward()
            advance_power_iteration(self.encoder, p)
        finally:
            self.encoder.requires_grad_(True)
            self.decoder.requires_grad_(True)
        average_gradients(list(self.decoder.parameters()))
        self._set_lr(self.opt_d, plan["lr"])
        self.opt_d.step()
        with torch.no_grad():
            live = list(self.decoder.parameters())
            torch._foreach_lerp_(list(self.ema.parameters()), live, 1.0 - cfg["ema_decay"])
        return terms

    @staticmethod
    def _set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
        for g in opt.param_groups:
            g["lr"] = lr

    def train_iteration(self, x_real: torch.Tensor, plan: dict) -> dict[str, torch.Tensor]:
        if plan["phase"] != self.pool_phase or plan["pool_size"] != self.pool.size:
            if plan["phase"] > self.pool_phase and self.cfg["robust_carry_over"] and len(self.robust):
                self.carry_over_robust(plan["phase"])
            self.pool = ImagePool(plan["pool_size"])  # reset at each phase change
            self.pool_phase = plan["phase"]
            if self.graphs is not None:
                self.graphs.clear()
        from ..data.datasets import fade_real_images

        x_real = x_real.to(self.device, non_blocking=True)
        if plan["phase"] > 0:  # no fade of the real images at 4² (data.py:47), whatever α is
            x_real = fade_real_images(x_real, plan["alpha"])
        if self.channels_last:
            x_real = x_real.contiguous(memory_format=torch.channels_last)
        terms = self.encoder_step(x_real, plan)
        terms.update(self.decoder_step(plan, x_real))
        self.samples += plan["batch"]
        self.iteration += 1
        return terms

    @torch.no_grad()
    def carry_over_robust(self, phase: int) -> None:
        """The robust loss of a new phase starts from the previous phase's α and scale, as the reference's
        prepareAdaptiveLossForNewPhase (session.py:247-256): on the flattened (channel, row, column)
        parameters, ``new[0][offset::4] = old[0]`` for offset 0..3, i.e. each old entry fills four
        consecutive new entries. That is the reference's index map, not a spatial 2× upsample: new row y
        takes old row y // 2, and its columns come from old columns (y % 2)·R/2 + x // 4 (4² → 8²: row y
        of the 8² image reads old columns 0-1 for even y and 2-3 for odd y). The latent parameters are
        copied (α and c are elementwise functions of them, the same at every resolution)."""
        new, old = self.robust[phase], self.robust[phase - 1]
        for name in ("latent_alpha", "latent_scale"):
            getattr(new, name).copy_(getattr(old, name).reshape(-1).repeat_interleave(4).view(new.shape))

    def next_batch(self, plan: dict) -> torch.Tensor:
        if self.stream is None:
            self.stream = self._make_loader(self._loader_state)
        self.stream.set_resolution(plan["resolution"])
        self.stream.set_batch_size(plan["batch"] // self.world)
        # Starting a DataLoader iterator draws a seed from torch's global RNG; a resumed run starts one
        # more iterator than an uninterrupted one, so keep loading out of the RNG stream (layer noise).
        rng = torch.get_rng_state()
        try:
            return next(self.stream)
        finally:
            torch.set_rng_state(rng)

    # -- outputs --------------------------------------------------------------------------------
    @torch.no_grad()
    def write_grids(self) -> None:
        from ..io.images import save_grid

        plan = step_plan(self.cfg, self.samples)
        p, alpha, R = plan["phase"], plan["alpha"], plan["resolution"]
        gen = torch.Generator().manual_seed(12345)
        codes = F.normalize(torch.randn(16, self.cfg["latent_dim"], generator=gen), dim=1).to(self.device)
        out = self.run_dir / "grids"
        tag = f"{self.samples:09d}"
        samples = run_decoder(self.ema, codes, p, alpha, False)[0]
        save_grid(samples.clamp(-1, 1).cpu(), out / f"{tag}-samples.png", nrow=8, overwrite=True)
        idx = list(range(min(8, len(self.dataset))))
        real = torch.stack([self.dataset.read(i, resolution=R) for i in idx]).to(self.device)
        z = self.encoder(real, p, alpha)
        recon = run_decoder(self.ema, z, p, alpha, False)[0]
        pairs = torch.stack([real, recon], 1).flatten(0, 1)
        save_grid(pairs.clamp(-1, 1).cpu(), out / f"{tag}-reconstructions.png", nrow=8, overwrite=True)
        if p >= 1 and len(idx) >= 4:
            # Mixing matrix: row i takes its coarse blocks (4-8) from column j's image.
            za, zb = z[:4], z[4:8] if len(idx) >= 8 else z[:4]
            n, cut = p + 1, min(2, p + 1)
            tiles = [torch.ones_like(real[0])] + list(real[4:8] if len(idx) >= 8 else real[:4])
            for i in range(4):
                tiles.append(real[i])
                for j in range(4):
                    stack = za[i:i + 1].unsqueeze(1).repeat(1, n, 1)
                    stack[:, :cut] = zb[j]
                    tiles.append(run_decoder(self.ema, stack, p, alpha, False)[0][0])
            save_grid(torch.stack(tiles).clamp(-1, 1).cpu(), out / f"{tag}-mixing.png", nrow=5, overwrite=True)

    def write_log(self, record: dict) -> None:
        """One line of log.jsonl: the losses of a log interval, or a metric's result (``"metric"`` key)."""
        self.log_lines.append(json.dumps(record, sort_keys=True))
        write_text_atomic(self.run_dir / "log.jsonl", "\n".join(self.log_lines) + "\n", overwrite=True)
        if self.tb is not None:
            if "metric" in record:
                self.tb.add_scalar(f"metrics/{record['variant']}", record["value"], record["samples"])
            else:
                for k, v in record.items():
                    if isinstance(v, (int, float)) and k != "samples":
                        self.tb.add_scalar(k, v, record["samples"])
            self.tb.flush()

    # -- the loop ---------------------------------------------------------------------------------
    def _handle_signal(self, signum, _frame) -> None:
        self.stop_signal = signum

    def _stop_requested(self) -> bool:
        flag = 1 if self.stop_signal is not None else 0
        if self.world > 1:
            import torch.distributed as dist

            t = torch.tensor([flag])
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=control_group())
            flag = int(t)
        return bool(flag)

    def run(self, overwrite: bool = False, max_iterations: int | None = None) -> int:
        """Train to the configured duration (or ``max_iterations`` more iterations). Returns the
        number of samples seen. Raises ``Interrupted`` after saving on SIGINT/SIGTERM.

        The run directory is locked for the whole run (``lock.py``): a second trainer on it stops with
        one line naming this one; the lock is released on every way out of here."""
        lock = self._lock_run_directory()
        try:
            return self._run(overwrite, max_iterations)
        finally:
            if lock is not None:
                lock.release()

    def _lock_run_directory(self) -> RunLock | None:
        """Rank 0 takes the lock for the whole torchrun job; every rank stops if it cannot."""
        lock, busy = None, None
        if self.is_main:
            lock = RunLock(self.run_dir, self.command, self.world)
            try:
                note = lock.acquire()
                if note:
                    self.say(note)
            except RunDirectoryBusy as e:
                lock, busy = None, str(e)
        busy = broadcast_text(busy)
        if busy is not None:
            raise RunDirectoryBusy(busy)
        return lock

    def startup_summary(self, resumed: bool) -> list[str]:
        """Lines for the start of a run: the data, device and arithmetic, the model, the preset and its
        departures from the paper, the phase table and any warning about the schedule."""
        from . import report

        cfg, mc = self.cfg, self.model_config
        data = report.probe_dataset(self.dataset)
        start = (f"resuming from {self.samples} samples" if resumed else
                 f"fine-tuning from {self.init_from['path']} at {report.count(self.samples)} samples"
                 if self.init_from else "a new run")
        n_threads = torch.get_num_threads()
        threads = f", {n_threads} thread{'s' if n_threads != 1 else ''}" if self.device.type == "cpu" else ""
        procs = f", {self.world} processes" if self.world > 1 else ""
        n_enc = sum(q.numel() for q in self.encoder.parameters())
        n_dec = sum(q.numel() for q in self.decoder.parameters())
        what, departures = report.departures(cfg, self.device.type)
        lines = [f"automod train: {self.run_dir} ({start})",
                 f"  data      {data.describe()}; mirror {'on' if cfg['mirror'] else 'off'}, split {cfg['split']}",
                 f"  device    {self.device}{threads}{procs}, {report.effective_precision(cfg, self.device.type)}"
                 f"{(', blocks compiled' + (' (AdaIN in fp32)' if self.bf16 else '')) if cfg['compile'] else ''}",
                 f"  model     {mc.resolution}² {mc.variant}, width {report.width_text(float(mc.width))}, latent "
                 f"{mc.latent_dim}: encoder {report.count(n_enc, 3)} + decoder {report.count(n_dec, 3)} parameters",
                 f"  preset    {what}"]
        lines += [f"  departs   {d}" for d in departures] or ["  departs   nothing: the paper's settings"]
        if self.bf16 and (slow_bf16 := bf16_warning(self.device)):
            lines.append(slow_bf16)
        if data.resolution is not None and data.resolution < cfg["resolution"]:
            lines.append(f"warning: the data is {data.resolution}², below the run's {cfg['resolution']}²: "
                         f"images are upsampled")
        lines += ["  phases"] + report.phase_table(cfg)
        warning = report.duration_warning(cfg)
        if warning:
            lines.append(warning)
        if cfg["metrics"]:
            lines.append(f"  metrics   {', '.join(cfg['metrics'])} of {cfg['metrics_n']:,} EMA samples every "
                         f"{report.count(cfg['metrics_every'])} samples and at the end")
        return lines

    def _evaluate_metrics(self, fid, reporter) -> float:
        """Compute the configured metrics now (rank 0), log and show them; returns the seconds spent."""
        from .report import count

        if fid is None:
            return 0.0
        t = time.perf_counter()
        plan = step_plan(self.cfg, self.samples)
        record = fid.evaluate(self.ema, plan["phase"], plan["alpha"], plan["resolution"], self.cfg["latent_dim"],
                              self.samples)
        self.write_log(record)
        reporter.metric(record, f"{record['variant']} at {count(self.samples)} samples ({plan['resolution']}², "
                                f"α {plan['alpha']:.2f}): {record['value']:.3f} (EMA samples against "
                                f"{record['data']['n']:,} training images; {record['wall_s']:.1f} s)",
                        show=self.show_progress)
        return time.perf_counter() - t

    def _run(self, overwrite: bool, max_iterations: int | None) -> int:
        from .report import ProgressReporter, cosine

        cfg = self.cfg
        resumed = self.restore_or_start(overwrite)
        if self.is_main and self.show_progress:
            for line in self.startup_summary(resumed):
                self.say(line)
        elif resumed and self.is_main:
            self.say(f"resuming from {self.samples} samples ({self.run_dir})")
        elif self.init_from and self.is_main:
            self.say(f"starting from {self.init_from['path']} at {self.samples} samples (the top phase, α = 1)")
        fid = None
        if self.is_main and "fid" in cfg["metrics"]:
            from .metrics import TrainingFID

            fid = TrainingFID(self.dataset, cfg["metrics_n"], self.device)
        if self.is_main:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.run_dir / "tensorboard"))
            except Exception:  # tensorboard not installed
                self.tb = None
        old_handlers = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                old_handlers[sig] = signal.signal(sig, self._handle_signal)
            except ValueError:  # not the main thread
                pass
        acc = torch.zeros(len(TERMS), device=self.device)
        acc_n = 0
        t_start, wall_base = time.perf_counter(), self.wall_time
        t_last = t_start  # start of the current log interval (for images/s)
        t_ckpt = time.monotonic()
        samples_last = self.samples
        done_iterations = 0
        reporter = ProgressReporter(cfg, self.say, interactive=sys.stderr.isatty() if self.show_progress else False)
        try:
            if self.is_main and self.show_progress:
                reporter.start()
            while self.samples < cfg["duration"]:
                if max_iterations is not None and done_iterations >= max_iterations:
                    break
                plan = step_plan(cfg, self.samples)
                x = self.next_batch(plan)
                before = self.samples
                terms = self.train_iteration(x, plan)
                done_iterations += 1
                acc += torch.stack([terms[k].detach().float() for k in TERMS])
                acc_n += 1
                now = time.perf_counter()
                if self.is_main:
                    reporter.update(self.samples, plan)
                crossed = lambda every: before // every != self.samples // every  # noqa: E731
                if crossed(cfg["log_every"]) or self.samples >= cfg["duration"]:
                    if self.world > 1:
                        import torch.distributed as dist

                        dist.all_reduce(acc)
                        acc /= self.world
                    self._check_accumulated(acc)
                    values = (acc / max(acc_n, 1)).tolist()
                    elapsed = now - t_last
                    self.wall_time = wall_base + now - t_start
                    record = {"samples": self.samples, "iteration": self.iteration, "phase": plan["phase"],
                              "resolution": plan["resolution"], "alpha": round(plan["alpha"], 6),
                              "lr": plan["lr"], "margin": plan["margin"], "batch": plan["batch"],
                              **{k: v for k, v in zip(TERMS, values)},
                              "images_per_s": round((self.samples - samples_last) / max(elapsed, 1e-9), 3),
                              "skipped_files": self.dataset.skipped, "wall_time_s": round(self.wall_time, 1)}
                    record["cosine"] = round(cosine(record, cfg["latent_dim"]), 6)  # the raw term is "cos"
                    if self.is_main:
                        self.write_log(record)
                        if self.show_progress:
                            reporter.record(record)
                    acc.zero_()
                    acc_n, t_last, samples_last = 0, now, self.samples
                if self.is_main and (crossed(cfg["grid_every"]) or self.samples >= cfg["duration"]):
                    self.write_grids()
                if self.is_main and (crossed(cfg["metrics_every"]) or self.samples >= cfg["duration"]):
                    t_last += self._evaluate_metrics(fid, reporter)  # not counted in the next images/s
                if crossed(cfg["checkpoint_every"]) or time.monotonic() - t_ckpt > 60 * cfg["checkpoint_minutes"] \
                        or self.samples >= cfg["duration"]:
                    if self.cuda:
                        self._check_accumulated(acc)
                    self.wall_time = wall_base + time.perf_counter() - t_start
                    self.save_checkpoint()
                    t_ckpt = time.monotonic()
                if self._stop_requested():
                    if self.cuda:
                        self._check_accumulated(acc)
                    self.wall_time = wall_base + time.perf_counter() - t_start
                    self.save_checkpoint()
                    raise Interrupted(self.stop_signal or signal.SIGTERM)
        except Exception as e:
            failure = compile_failure(e) if cfg["compile"] else None
            if failure is not None:
                raise failure from e
            raise
        finally:
            reporter.stop()
            for sig, handler in old_handlers.items():
                signal.signal(sig, handler)
            if self.stream is not None:
                self.stream.close()
                self.stream = None
            if self.tb is not None:
                self.tb.close()
        return self.samples
