"""Training presets and the progressive schedule as pure functions of the sample count.

A resolved training configuration is a flat JSON-able dict (``resolve_config``). Per-phase values
are lists indexed by phase p (resolution 4·2^p): ``phase_starts`` (samples), ``lr``, ``margin`` and
``batch`` (the global batch, split across ranks). The reference values (spec §2) are per-GPU
batches; the presets use them as the global batch.
"""

from __future__ import annotations

import copy
import math
import re

from ..errors import UserError

K, M = 1_000, 1_000_000

# Reference per-resolution values, phase 0 (4²) .. 8 (1024²).
REF_BATCH = [128, 128, 128, 64, 32, 32, 16, 4, 4]
REF_LR = [5e-4, 5e-4, 5e-4, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]
REF_MARGIN = [0.0, 0.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
REF_STARTS = [0, 2_400 * K, 4_800 * K, 7_200 * K, 9_600 * K, 20_040 * K]

# Defaults shared by every preset (names are the config keys; every one can be overridden).
COMMON = {
    "variant": "large",
    "width": 1.0,
    "latent_dim": 512,
    "fade": 1_200 * K,             # samples of each phase spent fading in (α ramps 0 → 1)
    "lr": REF_LR,
    "lr_rampdown": 0,              # samples before `duration` over which the lr falls (cosine) to lr_final·lr; 0: none
    "lr_final": 0.1,
    "margin": REF_MARGIN,
    "batch": REF_BATCH,
    "adam_betas": [0.0, 0.99],
    "adam_eps": 1e-8,
    "ema_decay": 0.999,
    "loss": "robust",             # image reconstruction loss: robust (Barron, adaptive) or l1
    "kl_weight": 0.1,
    "recon_weight": 0.2,
    "match_x_fade": 1.0,           # reconstruction multiplier during a fade ...
    "match_x_stable": 1.5,         # ... and once α = 1
    "cos_weight": 100.0,
    "consistency_weight": 1.0,
    "consistency_grad": "all",     # all (the reference) or image: see Trainer._decoder_compute
    "init": None,                  # a model file to start from (at the top phase, α = 1) instead of from scratch
    "decoder_recon_weight": 0.0,   # the paper: 0 (the decoder learns only through re-encoding)
    "e_mix_fraction": 0.25,        # share of the encoder step's fakes that are style-mixed
    "d_mix_fraction": 0.5,         # share of the decoder step's batch that is style-mixed
    "pool_size": 200,              # image pool below pool_large_resolution ...
    "pool_size_large": 100,        # ... and from it up
    "pool_large_resolution": 256,
    "layer_noise": True,
    "mirror": True,
    "split": "all",                # all, or train (leave out the deterministic test split)
    "test_fraction": 0.05,
    "workers": 2,
    "seed": 0,
    "checkpoint_every": 500 * K,   # samples between training-state checkpoints (and snapshots)
    "checkpoint_minutes": 15.0,    # ... and at least this often in wall time
    "log_every": 10 * K,           # samples between log lines
    "grid_every": 500 * K,         # samples between image grids
    "device": "auto",
    "precision": "auto",           # auto: bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16 everywhere
    "threads": 0,                  # CPU threads for PyTorch (0: its default). 1 is much faster on a busy machine
    "cuda_graphs": False,          # replay captured CUDA graphs of the training steps (CUDA, one process)
}

CPU_FAST = {"loss": "l1", "recon_weight": 1.0, "consistency_grad": "image"}

PRESETS: dict[str, dict] = {
    "ffhq256": {"resolution": 256, "phase_starts": REF_STARTS + [30_680 * K], "duration": 34_700 * K},
    "ffhq512": {"resolution": 512, "phase_starts": REF_STARTS + [30_680 * K, 35_700 * K], "duration": 42_400 * K},
    "celebahq256": {"resolution": 256, "variant": "small", "phase_starts": REF_STARTS + [27_500 * K],
                    "duration": 31_900 * K, "margin": REF_MARGIN[:5] + [0.02, 0.04]},
    "lsun-cars256": {"resolution": 256, "phase_starts": REF_STARTS + [30_000 * K], "duration": 32_100 * K,
                     "mirror": False},
    "lsun-bedrooms256": {"resolution": 256, "phase_starts": REF_STARTS + [30_000 * K], "duration": 27_600 * K,
                         "mirror": False},
    # CPU presets: narrow networks, short phases and fades, small batches. They add a direct pixel loss
    # for the decoder (decoder_recon_weight; the paper's game has none, so its decoder learns only
    # through re-encoding, which takes millions of samples), a shorter EMA, and (CPU_FAST) plain L1 with
    # a 5× reconstruction weight instead of the adaptive robust loss at 0.2: at equal samples that
    # reconstructs toy faces about 2 dB better (20k-sample runs at 32², 200 held-out faces: 14.9 → 16.8
    # dB; L1 alone 15.4; Adam β₁ 0.5, lr 3e-3 or width 1/8 did not help). CPU_FAST also holds the
    # consistency term's measuring blocks fixed (consistency_grad "image", below). Nor did anything tried for
    # scale separation (median share of the way a coarse mix moves towards the true one, 32², 200
    # pairs; these values: 0.49 at 20k samples, 0.48 at 40k): consistency weight 10 (0.24), 90% of the
    # decoder step mixed (0.37), both (0.11), decoder pixel loss 0.3 (0.17 at 40k, though 0.7 dB
    # sharper) or 0 (further, but 3 dB blurrier). The paper presets above keep the reference's values.
    # What did help (48k-sample runs at 32², 200 held-out pairs; "share": the median share of the way a
    # coarse mix moves from A's reconstruction to the reconstruction of the true mix): consistency_grad
    # "image" (the consistency term's measuring blocks held fixed): share 0.38 / 0.32 over seeds 0 / 1
    # against 0.29 / 0.28 / 0.28 with "all" over seeds 0 / 1 / 2, coarse mixes nearer the true mix than
    # A's reconstruction in 34% / 51% of pairs against 25% / 23% / 31%, and reconstructions 17.9 / 17.7
    # dB against 17.3 / 16.8 / 17.2 (middle mixes: share 0.08 / 0.10 against 0.07 / 0.05 / 0.06).
    # With it, a consistency weight of 10 is still worse (0.31, 15.6 dB).
    # The lr of 1e-3 levels off late in a run: the bundled toy64 model gained nothing from 64k to 128k
    # fine-tuning samples at 1e-3 (20.3 dB both), then 1.2 dB in 16k samples at 3e-4 (1,000 held-out
    # faces). toy64 therefore ramps the lr down inside its one run (lr_rampdown, to 0.1× at the end).
    # What limits the toy models (issue 14; 64² runs straight at the top phase, 1 thread, validation
    # faces of seed 777 — never the test seed):
    # - Samples, not capacity. A plain autoencoder (the same networks, L1 only, no game) at width 1/16
    #   reaches 17.9 / 19.8 dB after 20k / 40k samples; the "toy" plan of 4x the channels at 4²-16²
    #   (128, 128, 128, 64, 32; 4.2M parameters) only 17.2 dB after 20k, at 2.7x the cost per sample
    #   (1.7x in bf16). Early on the game learns reconstructions about as fast per sample (16.1 dB at
    #   10k), 3x slower per second.
    # - Adam's β1: 0.9 instead of the reference's 0 gives the autoencoder 17.9 / 19.3 dB after 8k / 16k
    #   samples against 16.3 / 17.1 (batch 8 instead of 16: 17.6 / 18.1), and the game a lower
    #   reconstruction loss (0.204 after 7k samples against 0.241). toy64 uses 0.9.
    # - The EMA with momentum: weights that move consistently leave a long EMA behind the live encoder
    #   it is paired with in the model file: EMA 0.99 gave 11.3 dB where the live decoder gave 18.8
    #   (72k samples). toy64's EMA is 0.95 (a memory of 20 iterations).
    # - The codes carry the middle factors (eyes, mouth, glasses, hair style) only once reconstructions
    #   are sharp: a linear probe's R² for them is 0.0 at 19.8 dB (autoencoder) and 0.06 for the old
    #   bundled model at 21.6 dB. Of the pixels a "middle" mix changes, hair style is 77%, eyes 15%,
    #   glasses 9%, mouth 3.5% (200 pairs).
    # - The texture grain is not what limits PSNR: faces with and without it differ by 33.9 dB.
    "toy32": {"resolution": 32, "width": 1 / 16, "latent_dim": 512, "phase_starts": [0, 8 * K, 16 * K, 32 * K],
              "fade": 8 * K, "duration": 80 * K, "batch": [32, 32, 32, 32], "lr": [1e-3] * 4,
              "margin": [0.0, 0.0, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.995,
              **CPU_FAST,
              "checkpoint_every": 8 * K, "checkpoint_minutes": 5.0, "log_every": 2 * K, "grid_every": 8 * K,
              "workers": 1},
    # The demo's own run (automod demo): toy32's model with toy64's optimiser (below), on a schedule that
    # reaches 32² after 4k samples and trains there to 12k, in a couple of minutes on 2 cores.
    "demo32": {"resolution": 32, "width": 1 / 16, "latent_dim": 512, "phase_starts": [0, 1 * K, 2 * K, 4 * K],
               "fade": 1 * K, "duration": 12 * K, "batch": [32, 32, 32, 32], "lr": [1e-3] * 4,
               "lr_rampdown": 4 * K, "lr_final": 0.1, "adam_betas": [0.9, 0.99],
               "margin": [0.0, 0.0, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.95, **CPU_FAST,
               "checkpoint_every": 10 * K, "checkpoint_minutes": 5.0, "log_every": 2 * K, "grid_every": 10 * K,
               "workers": 0},
    "toy64": {"resolution": 64, "width": 1 / 16, "latent_dim": 512,
              "phase_starts": [0, 8 * K, 16 * K, 32 * K, 56 * K],
              "fade": 8 * K, "duration": 300 * K, "batch": [32, 32, 32, 32, 16], "lr": [1e-3] * 5,
              "lr_rampdown": 120 * K, "lr_final": 0.1, "adam_betas": [0.9, 0.99],
              "margin": [0.0, 0.0, 0.05, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.95,
              **CPU_FAST,
              "checkpoint_every": 8 * K, "checkpoint_minutes": 5.0, "log_every": 1 * K, "grid_every": 8 * K,
              "workers": 1},
}

PER_PHASE_KEYS = ("phase_starts", "lr", "margin", "batch")
# Keys that may change when a run is resumed: they do not change what is trained, only where and in
# which arithmetic (a run moved from a CPU to a GPU changes device and precision; it then stops being
# bit-identical to an uninterrupted run, as any change of hardware would make it).
RESUMABLE_KEYS = {"duration", "checkpoint_every", "checkpoint_minutes", "log_every", "grid_every", "workers",
                  "device", "threads", "precision", "cuda_graphs"}


def config_differences(old: dict, new: dict) -> list[str]:
    """Settings that differ between a saved run and a new command, ignoring the resumable ones and
    settings the saved run predates when the new command leaves them at their default."""
    out = []
    for k in sorted(set(old) | set(new)):
        if k in RESUMABLE_KEYS:
            continue
        if k not in old and k in COMMON and new.get(k) == COMMON[k]:
            continue
        if old.get(k) != new.get(k):
            out.append(k)
    return out


def parse_count(text: str | int | float) -> int:
    """'30M' / '500k' / '1.5M' / '20000' -> a number of images."""
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmM]?)\s*", str(text))
    if not m:
        raise UserError(f"cannot read '{text}' as a number of images (use e.g. 20000, 500k or 1.5M)")
    value = float(m.group(1)) * {"": 1, "k": K, "m": M}[m.group(2).lower()]
    return int(round(value))


def n_phases(resolution: int) -> int:
    return int(math.log2(resolution)) - 1


def resolve_config(preset: str = "ffhq256", overrides: dict | None = None) -> dict:
    """Preset + overrides -> the full configuration (validated; per-phase lists cut to the resolution).

    A scalar override of a per-phase key (``lr``, ``margin``, ``batch``) applies to every phase.
    """
    if preset not in PRESETS:
        raise UserError(f"unknown preset '{preset}' (choose from {', '.join(PRESETS)})")
    cfg = copy.deepcopy(COMMON)
    cfg.update(copy.deepcopy(PRESETS[preset]))
    cfg["preset"] = preset
    for key, value in (overrides or {}).items():
        if value is None:
            continue
        if key not in cfg:
            raise UserError(f"unknown training setting '{key}' (known: {', '.join(sorted(cfg))})")
        if key in ("lr", "margin", "batch") and not isinstance(value, (list, tuple)):
            value = [value] * len(cfg[key])
        cfg[key] = list(value) if isinstance(value, tuple) else value
    for key in ("duration", "fade", "checkpoint_every", "log_every", "grid_every", "lr_rampdown"):
        cfg[key] = parse_count(cfg[key])
    cfg["phase_starts"] = [parse_count(s) for s in cfg["phase_starts"]]
    cfg["batch"] = [int(b) for b in cfg["batch"]]
    res = cfg["resolution"]
    if not isinstance(res, int) or res < 4 or res & (res - 1):
        raise UserError(f"resolution must be a power of two >= 4, got {res}")
    n = n_phases(res)
    for key in PER_PHASE_KEYS:
        if len(cfg[key]) < n:
            raise UserError(f"preset '{preset}' defines '{key}' for {len(cfg[key])} phases; resolution {res} "
                            f"needs {n} (give --set {key}=[...] with one value per phase)")
        cfg[key] = cfg[key][:n]
    starts = cfg["phase_starts"]
    if starts[0] != 0 or any(b <= a for a, b in zip(starts, starts[1:])):
        raise UserError(f"phase_starts must start at 0 and increase, got {starts}")
    if any(b < 1 for b in cfg["batch"]):
        raise UserError(f"batch sizes must be positive, got {cfg['batch']}")
    if cfg["precision"] not in ("auto", "fp32", "bf16"):
        raise UserError(f"precision must be auto, fp32 or bf16, got '{cfg['precision']}'")
    if cfg["consistency_grad"] not in ("all", "image"):
        raise UserError(f"consistency_grad must be 'all' or 'image', got '{cfg['consistency_grad']}'")
    if not isinstance(cfg["cuda_graphs"], bool):
        raise UserError(f"cuda_graphs must be true or false, got {cfg['cuda_graphs']!r}")
    if cfg["loss"] not in ("robust", "l1"):
        raise UserError(f"loss must be 'robust' or 'l1', got '{cfg['loss']}'")
    if cfg["split"] not in ("all", "train"):
        raise UserError(f"split must be 'all' or 'train', got '{cfg['split']}'")
    if cfg["lr_rampdown"] < 0 or not 0 < float(cfg["lr_final"]) <= 1:
        raise UserError(f"lr_rampdown must be >= 0 and lr_final in (0, 1], got {cfg['lr_rampdown']} and "
                        f"{cfg['lr_final']}")
    if cfg["fade"] < 1 or cfg["duration"] < 1:
        raise UserError("fade and duration must be at least 1 sample")
    return cfg


# ----------------------------------------------------------------------------------------------
# The schedule: pure functions of the sample count


def phase_at(cfg: dict, samples: int) -> int:
    starts = cfg["phase_starts"]
    return max(p for p, s in enumerate(starts) if s <= samples)


def alpha_at(cfg: dict, samples: int) -> float:
    """Fade-in weight of the newest block: min(1, samples into the phase / fade); 1 at phase 0."""
    p = phase_at(cfg, samples)
    if p == 0:
        return 1.0
    return min(1.0, (samples - cfg["phase_starts"][p]) / cfg["fade"])


def resolution_at(cfg: dict, samples: int) -> int:
    return 4 * 2 ** phase_at(cfg, samples)


def lr_at(cfg: dict, samples: int) -> float:
    """The phase's lr; over the last ``lr_rampdown`` samples before ``duration`` it falls along a half
    cosine to ``lr_final`` times that (a run extended with a longer --duration moves the ramp with it)."""
    lr = float(cfg["lr"][phase_at(cfg, samples)])
    ramp = cfg.get("lr_rampdown", 0)
    if ramp > 0:
        t = min(1.0, max(0.0, (samples - (cfg["duration"] - ramp)) / ramp))
        final = float(cfg.get("lr_final", 0.1))
        lr *= final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))
    return lr


def margin_at(cfg: dict, samples: int) -> float:
    return float(cfg["margin"][phase_at(cfg, samples)])


def batch_at(cfg: dict, samples: int) -> int:
    """Global batch size (all ranks together)."""
    return int(cfg["batch"][phase_at(cfg, samples)])


def match_x_at(cfg: dict, samples: int) -> float:
    return cfg["match_x_fade"] if alpha_at(cfg, samples) < 1.0 else cfg["match_x_stable"]


def pool_size_at(cfg: dict, samples: int) -> int:
    big = resolution_at(cfg, samples) >= cfg["pool_large_resolution"]
    return int(cfg["pool_size_large"] if big else cfg["pool_size"])


def step_plan(cfg: dict, samples: int) -> dict:
    """Everything one iteration needs from the schedule at this sample count."""
    return {"phase": phase_at(cfg, samples), "resolution": resolution_at(cfg, samples),
            "alpha": alpha_at(cfg, samples), "lr": lr_at(cfg, samples), "margin": margin_at(cfg, samples),
            "batch": batch_at(cfg, samples), "match_x": match_x_at(cfg, samples),
            "pool_size": pool_size_at(cfg, samples)}
