"""Training presets and the progressive schedule as pure functions of the sample count.

A resolved training configuration is a flat JSON-able dict (``resolve_config``). Per-phase values
are lists indexed by phase p (resolution 4·2^p): ``phase_starts`` (samples), ``lr``, ``margin`` and
``batch`` (the global batch, split across ranks).

The paper presets follow the reference code that trained the released models (AaltoVision/automodulator
db683ed, pioneer/): its phase tables (``makeTS``, train.py:488-530), the learning rates its scheduler
actually applied, and the batch table of the two GPUs the paper trained on (session.py:17-34).
"""

from __future__ import annotations

import copy
import math
import re

from ..errors import UserError

K, M = 1_000, 1_000_000

# Reference per-resolution values, phase 0 (4²) .. 8 (1024²).
# Batch: session.py:17-34 keys the batch on torch.cuda.device_count() and nn.DataParallel splits it over
# the GPUs, so it is the global batch. The paper trained every released model on two GPUs ("With two NVIDIA
# Titan V100 GPUs, the training times were 10 days for CELEBA-HQ, 10.5 days for FFHQ 256×256 and (total)
# 22.5 days for FFHQ 512×512, for LSUN Bedrooms 18.5 days, and for Cars 18 days", supplement §B), so the
# paper presets take the two-GPU table (session.py:26). The reference README's "1-GPU setup has been
# confirmed to work in all cases up to 9.6M steps, and 2-GPU setup on all other resolutions" says what fits
# in 12 GB, not that the runs switched; had they started on one GPU, phases 0-3 (4²-32², up to 9.6M) would
# have run at 128/128/128/64 (session.py:22) instead of 256/256/256/128.
BATCH_TWO_GPUS = [256, 256, 256, 128, 64, 28, 32, 14, 2]   # session.py:26
BATCH_ONE_GPU = [128, 128, 128, 64, 32, 32, 16, 4, 1]      # session.py:22
# lr: makeTS gives 5e-4 for phases 0-3 and 1e-3 from phase 4 (train.py:493-528), but TrainingScheduler.update
# (training_scheduler.py:11-25) only applies an entry once the sample count passes the *next* entry's start,
# so entry 0 is never applied: phase 0 (4²) runs at the optimisers' initial lr, args.lr = 0.001
# (config.py:44; session.py:114-115), the value of every released run (the README's training command gives no
# --lr). Phases 1-3 get 5e-4 from their entries.
REF_LR = [1e-3, 5e-4, 5e-4, 5e-4, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3]
# margin: 0 at phases 0-1 (train.py:494; the scheduler starts at m = 0, training_scheduler.py:8), 0.05 from
# phase 2 (train.py:498, 501, 509, 518); per-data-set changes in the presets below.
REF_MARGIN = [0.0, 0.0, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05]
REF_STARTS = [0, 2_400 * K, 4_800 * K, 7_200 * K, 9_600 * K, 20_040 * K]  # train.py:493-498, 501/509/518, 503/511/520

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
    "batch": BATCH_TWO_GPUS,
    "adam_betas": [0.0, 0.99],
    "adam_eps": 1e-8,
    "ema_decay": 0.999,
    "loss": "robust",             # image reconstruction loss: robust (Barron, adaptive) or l1
    "kl_weight": 0.1,
    "recon_weight": 0.2,
    "match_x_fade": 1.0,           # reconstruction multiplier during a fade ...
    "match_x_stable": 1.5,         # ... and once α = 1 (train.py:387-395)
    "fade_first_phase": True,      # α ramps at 4² too (train.py:398-399): match_x 1.0 and no image pool for
                                   # the first `fade` samples; the networks and real images have no fade at 4²
    "robust_carry_over": True,     # a new phase's robust-loss α and scale start from the previous phase's
                                   # (session.py:247-256), not from α = 1, c = 1
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
    "precision": "fp32",           # fp32 (the reference; on CUDA cuDNN convs use TF32, PyTorch's default),
                                   # bf16 (autocast everywhere), or auto (bf16 autocast on CUDA, fp32 on CPU)
    "threads": 0,                  # CPU threads for PyTorch (0: its default). 1 is much faster on a busy machine
    "cuda_graphs": False,          # replay captured CUDA graphs of the training steps (CUDA, one process)
    "compile": False,              # torch.compile each network block (train/compiled.py; needs a C++ compiler on a CPU)
    "metrics": [],                 # metrics computed during training: fid (EMA samples against the data)
    "metrics_every": 1 * M,        # samples between metric evaluations (and one at the end)
    "metrics_n": 10 * K,           # generated (and real) images per evaluation
}

CPU_FAST = {"loss": "l1", "recon_weight": 1.0, "consistency_grad": "image", "layer_noise": False}
# layer_noise off: toy faces have no stochastic detail to model, and the toy runs that had the noise learned
# to mute it (the bundled toy64 model's noise scales: mean |scale| 0.001-0.011 per layer, against feature maps
# of unit scale). Off, the demo32 schedule to 24k samples reconstructs as well (300 validation faces, seeds
# 0 / 1: 18.15 / 17.65 dB against 17.67 / 17.69 with noise) in 15-19% less time at 32² (fp32, 2-core Xeon),
# and toy64 width 1/8 at 64² in bf16 trains 1.5x faster (batch 32: 21.8 -> 34 images/s, batch 64: 15.8 -> 23.8;
# the draws alone were 16% of an iteration).
# What the CPU presets keep from the trainer before issue 15, so that their runs (and a resumed toy run)
# train exactly as they did: α = 1 from the start of 4² (the pool on and match_x 1.5 at once), robust-loss
# parameters that start fresh at each phase (they train with L1, which has none), bf16 autocast on CUDA.
CPU_KEEP = {"fade_first_phase": False, "robust_carry_over": False, "precision": "auto"}

# The paper presets. Each reproduces a released model of the reference code: its makeTS schedule
# (train.py:488-530, below per preset), the learning rates of REF_LR, the two-GPU batch table
# BATCH_TWO_GPUS (the paper's two V100s, see above), the sample count of the released checkpoint as the
# duration, the robust loss at 0.2·match_x, fp32, the EMA 0.999 and every other COMMON value. --set and
# the flags change any of them; the start-up summary lists each change as a departure from the paper.
PRESETS: dict[str, dict] = {
    # -d ffhq (train.py:508-513): 9,600k p4, 20,040k p5, 30,680k p6 (256²), margin 0.05; the released
    # FFHQ 256² model saw 34.7M samples.
    "ffhq256": {"resolution": 256, "phase_starts": REF_STARTS + [30_680 * K], "duration": 34_700 * K},
    # the same schedule on to 512² at 35,700k (train.py:513); released at 42.4M samples.
    "ffhq512": {"resolution": 512, "phase_starts": REF_STARTS + [30_680 * K, 35_700 * K], "duration": 42_400 * K},
    # -d celebaHQ --small_darch (train.py:500-504): 20,040k p5 at margin 0.02, 27,500k p6 at 0.04;
    # released at 31.9M samples.
    "celebahq256": {"resolution": 256, "variant": "small", "phase_starts": REF_STARTS + [27_500 * K],
                    "duration": 31_900 * K, "margin": REF_MARGIN[:5] + [0.02, 0.04]},
    # -d lsun without --lsunm02e (train.py:522-525): 20,040k p5, 30,000k p6 (256²) at margin 0.05; the
    # released Cars model (32.1M samples) is 256², so it never met the entry at 38,000k (p6, margin 0.08),
    # which this schedule (one margin per phase) cannot express. No mirroring (supplement §B).
    "lsun-cars256": {"resolution": 256, "phase_starts": REF_STARTS + [30_000 * K], "duration": 32_100 * K,
                     "mirror": False},
    # -d lsun --lsunm02e (train.py:519-521): 20,040k p5 at margin 0.02, 24,840k p6 (256²) at 0.05. The
    # released Bedrooms model is 256² at 27.6M samples, which only this schedule reaches (the other starts
    # 256² at 30.0M); it matches the supplement's phase lengths too (128²: 4.8M, 256²: 2.9M samples). The
    # supplement's "margin 0.2 from 128×128 upwards" (0.02 in the code's scale) is not what the code ran at
    # 256²: train.py:521 gives 0.05.
    "lsun-bedrooms256": {"resolution": 256, "phase_starts": REF_STARTS + [24_840 * K], "duration": 27_600 * K,
                         "margin": REF_MARGIN[:5] + [0.02, 0.05], "mirror": False},
    # CPU presets: narrow networks, short phases and fades, small batches, and CPU_KEEP (above). They add
    # a direct pixel loss for the decoder (decoder_recon_weight; the paper's game has none, so its decoder learns only
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
    # With it, a consistency weight of 10 is still worse (0.31, 15.6 dB). (Those "all" runs held the
    # target h fixed, as the trainer did until issue 15; the reference's "all", now ours, does not.)
    # The lr of 1e-3 levels off late in a run: the bundled toy64 model gained nothing from 64k to 128k
    # fine-tuning samples at 1e-3 (20.3 dB both), then 1.2 dB in 16k samples at 3e-4 (1,000 held-out
    # faces). toy64 therefore ramps the lr down inside its one run (lr_rampdown, to 0.1× at the end).
    # What limits the toy models (issue 14; 64² runs straight at the top phase, 1 thread, validation
    # faces of seed 777 — never the test seed):
    # - Samples, not capacity, early on. A plain autoencoder (same networks, L1 only, no game), width 1/16,
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
    # - The middle factors' mean probe R² is near 0 at any sharpness reached yet (0.0 at 19.8 dB for the
    #   autoencoder, 0.06 for the old bundled model at 21.6 dB, 0.01 for the width-1/8 autoencoder at 22.1
    #   dB, below), but the mean hides two factors the codes do carry (benchmarks/scale_map.py, bundled
    #   model, seed 777): glasses R² 0.56, a one-vs-rest classifier 89.5% right (majority 67.6%), hair style
    #   77.2% (majority 30.0%); eyes, mouth, smile and brows 0.02 or below. The decoder draws neither eyes,
    #   mouths nor glasses: the mixing test's ceiling at its sharpness is 0% for them, 51% for hair style,
    #   so the middle test's ceiling is hair style's. And it draws hair style from blocks 4-32, not the
    #   middle group's 16-32: the median share of the way to the true hair-style mix is 0.13 from 16-32,
    #   0.30 from 8-32, 0.31 from 4-32 (StyleGAN's coarse styles, 4²-8² at 1024², carry "general hair
    #   style" too: Karras et al. 2019, Fig. 3).
    #   Of the pixels a "middle" mix changes, hair style is 77%, eyes 15%, glasses 9%, mouth 3.5%.
    # - The texture grain is not what limits PSNR: faces with and without it differ by 33.9 dB.
    # - The bundled model is on a plateau at this width: 120k more samples from it with toy64's optimiser
    #   (--init, lr ramped from 1e-3 to 1e-4 over the last 100k; 33 images/s on 2 cores) gave 21.69 against
    #   21.50 dB, mixing test 57 / 2.5 / 65% of pairs against 56 / 3 / 63%, probe R² for the middle
    #   factors 0.08 against 0.06, edits within the noise (glasses 82.5 / 81.5%, smile 58.5 / 63%).
    # - toy64 as it is now, one whole run from scratch (300k samples, 2.5 hours; 1 thread to 72k, then 2):
    #   20.99 dB, mixing test 25.5 / 3 / 43% of pairs (ceiling at its sharpness 79.5 / 43.5 / 82%), probe R²
    #   for the middle factors -0.02, edits glasses 74.5% / smile 53.5% — below the bundled model (21.50 dB,
    #   56 / 3 / 63%) at two fifths of its samples, so the bundled file stays. Mid-run the EMA decoder lagged
    #   the live one (96k: 16.9 against 19.3 dB; 184k, ramp begun: 20.2 against 20.4); at the ramp's end they
    #   agree (20.98 live), so the EMA costs the finished file nothing.
    # - Width, late: the plain autoencoder (benchmarks/autoencoder_probe.py) at width 1/16 with toy64's
    #   optimiser and an lr ramp over its last 36k of 90k samples (104 images/s on 2 cores, 3.5x the
    #   game's rate) reaches 19.4 / 20.3 / 20.9 / 21.4 dB after 15k / 30k / 60k / 90k (500 validation
    #   faces): the level the bundled game model reached in 756k samples and did not leave with 120k
    #   more (above), short of the 23 dB the middle mixing test needs, so the next candidate is wider
    #   (width 1/8, benchmarks/gpu_session.sh).
    #   The same autoencoder at width 1/8, 150k samples with the ramp over the last 60k (bf16 autocast,
    #   59 images/s on a 2-core Xeon with AMX; 18.4 dB at 15k as in fp32): 18.4 / 20.5 / 21.0 / 21.0 / 21.4
    #   dB after 15k / 30k / 45k / 60k / 75k, against 19.4 / 20.3 / 20.6 / 20.9 / 21.3 at width 1/16 (whose
    #   ramp began at 54k; width 1/8's at 90k, so its lead at 45k is width), then 21.8 / 22.0 / 22.0 after
    #   120k / 135k / 150k: 22.1 dB on 1,000 validation faces, levelling off at the ramp's end. Width buys
    #   tenths of a dB at these sample counts, not the 2.5 dB to the target. Never trained to mix, it
    #   passes the mixing test in 41 / 1.5 / 67.5% of pairs (ceiling 90 / 52 / 94.5%; the bundled game
    #   model 56 / 3 / 63%), its probe R² is 0.59 / 0.01 / 0.84 (at 22 dB the codes still carry nothing of
    #   the middle factors), edits glasses 89% / smile 48.5% (both moving pixels by ~0.5/255).
    # - The game started from that autoencoder (toy64 with width 1/8, bf16, --init, lr 5e-4 ramped to 0.1x
    #   over 56k samples; 11-13 images/s on 2 cores, a quarter of it the decoder-side reconstruction pass:
    #   14.1 against 18.3 without it) first lost sharpness (live decoder 21.3 dB after 16k
    #   game samples, the EMA decoder 15.6) and, stopped after 49k (ramp 86% done), scored 21.7 dB, mixing
    #   42 / 2 / 62.5%, probe R² 0.59 / 0.01 / 0.84, edits glasses 79.5% / smile 51.5%: the autoencoder's
    #   level, below the bundled model's coarse mixing (56%), so it was not shipped.
    # - Few-pixel features (eyes, mouths, glasses) are the decoder's slowest lesson: at 22 dB the
    #   autoencoder draws none (22.2 dB on its training faces: no over-fitting). The decoder alone,
    #   memorising 64 faces from a free code each (autoencoder_probe.py --codes free), reaches only 23.4 dB
    #   after 100k samples at width 1/16, without eyes (width 1/8: after 30k; 1/4 ahead again); fed the
    #   true factors it learns more slowly than with the encoder's code (19.4 against 20.9 dB after 60k,
    #   held-out). No change from dropping the encoder's spectral norm or L1 (MSE), +0.9 dB from nearly
    #   aligned faces (still no eyes); nor from a higher lr (the autoencoder memorising 64 faces: 20.3 dB
    #   at 3e-3 and 18.9 at 1e-2 against 20.6 at 1e-3 after 10k). Steps and width, not the code.
    # - Nor does bolder toy data: heads 1.2x larger (half-width 0.28-0.36 of the image), a third less
    #   layout spread, eyes 1.2x larger and strokes 1.6x thicker gave the autoencoder (width 1/16, 30k
    #   samples, 1 thread each, run side by side) 18.7 against 20.4 dB on validation faces of their own
    #   kind, still without eyes, probe R² for the middle factors 0.07 against -0.03 and a lower ceiling
    #   of the coarse mixing test at its sharpness (44 against 69%). A perfect mixer blurred to equal PSNR
    #   would pass the middle test more often on bold faces (73% at 22.6 dB against 52% at 22.4), but the
    #   decoder does not get there sooner.
    # - Nor do cheap changes to the decoder or its loss (memorising those 64 faces, width 1/16, 21.4 / 21.9 dB
    #   after 5k / 10k samples): a learned canvas 21.3 / 21.9, coordinate channels 21.2 / 21.9 (position is
    #   not what it lacks), L1 at every block's output too 20.5 / 21.2, Laplacian-pyramid L1 20.1 / 20.8,
    #   10x the lr of the AdaIN style layers 21.6 / 22.1. Nor after 10k samples (2026-12-05, same probe, 1
    #   thread each; base 21.9 dB): StyleGAN2's skip output (every block's to_rgb, upsampled and summed) 21.3,
    #   AdaIN scaling by the channel's RMS without subtracting its mean 21.4, pixel norm in place of instance
    #   norm 20.1, no blur 21.9, the convs' and codes' lr 3x / 10x with the style layers' kept 22.0 / 22.0,
    #   faces all in one place and without texture 22.4. A plain decoder of the same size (a Linear from the
    #   code to the 4x4 map, then upsampling convs, PyTorch's default init, no AdaIN; 0.34M parameters)
    #   reaches 20.3 dB: the automodulator's decoder is not the slow learner, a few hundred steps are few
    #   (autoencoder_probe.py --codes free --n-train 64 --val-n 64 --samples 10k and the switches it lists).
    # - The decoder step's re-encoding cycle holds for the codes of real faces, not for the random codes the
    #   game draws: cos(E(D(z)), z) is 0.031 for random unit z and 0.661 for z = E(x) of held-out faces
    #   (bundled model; eval_bundled.py --seed 777 --n-recon 300). So the consistency term, measured on random
    #   codes, may teach little mixing. Neither of two direct fixes helped (`automod train DATA --preset
    #   demo32 --duration 40k --set lr_rampdown=16000 --threads 1`, seed 0; 300 / 200 validation faces / pairs
    #   of seed 777; median share of the way to the true mix, coarse / fine): the reference's cos_weight of
    #   100 gave 19.32 dB, shares 0.24 / 0.72, the cycle's cosine (its training log, 32k) 0.038; 64x that
    #   (6400) 18.58 dB, 0.17 / 0.76, cosine 0.066; the decoder step's mixed rows made from the real batch's
    #   codes (A one face, B another) 17.38 dB, 0.40 / 0.48, with coarse mixes nearer the true mix than A's
    #   reconstruction in 3% of pairs against 35%, fine ones in 26% against 99%.
    # - Per step a larger batch is worth more, per sample a smaller one (autoencoder, width 1/16): 19.2 dB
    #   after 313 steps of batch 64 against 17.4 after 313 of 16, 20.0 after 625 against 19.8 after 1,250;
    #   at 20k samples 19.2 (64) against 19.8 (16), which also runs 1.5x faster per image on 2 cores. lr 2e-3
    #   at batch 64: 18.0 dB at 20k. Hence batch 64 for the GPU run, where an iteration costs the same.
    "toy32": {"resolution": 32, "width": 1 / 16, "latent_dim": 512, "phase_starts": [0, 8 * K, 16 * K, 32 * K],
              "fade": 8 * K, "duration": 80 * K, "batch": [32, 32, 32, 32], "lr": [1e-3] * 4,
              "margin": [0.0, 0.0, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.995,
              **CPU_FAST, **CPU_KEEP,
              "checkpoint_every": 8 * K, "checkpoint_minutes": 5.0, "log_every": 2 * K, "grid_every": 8 * K,
              "workers": 1, "metrics_every": 50 * K, "metrics_n": 1 * K},
    # The demo's own run (automod demo): toy32's model with toy64's optimiser (below), on a schedule that
    # reaches 32² after 4k samples and trains there to 12k, in a couple of minutes on 2 cores.
    "demo32": {"resolution": 32, "width": 1 / 16, "latent_dim": 512, "phase_starts": [0, 1 * K, 2 * K, 4 * K],
               "fade": 1 * K, "duration": 12 * K, "batch": [32, 32, 32, 32], "lr": [1e-3] * 4,
               "lr_rampdown": 4 * K, "lr_final": 0.1, "adam_betas": [0.9, 0.99],
               "margin": [0.0, 0.0, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.95,
               **CPU_FAST, **CPU_KEEP,
               "checkpoint_every": 10 * K, "checkpoint_minutes": 5.0, "log_every": 2 * K, "grid_every": 10 * K,
               "workers": 0},
    "toy64": {"resolution": 64, "width": 1 / 16, "latent_dim": 512,
              "phase_starts": [0, 8 * K, 16 * K, 32 * K, 56 * K],
              "fade": 8 * K, "duration": 300 * K, "batch": [32, 32, 32, 32, 16], "lr": [1e-3] * 5,
              "lr_rampdown": 120 * K, "lr_final": 0.1, "adam_betas": [0.9, 0.99],
              "margin": [0.0, 0.0, 0.05, 0.05, 0.05], "decoder_recon_weight": 1.0, "ema_decay": 0.95,
              **CPU_FAST, **CPU_KEEP,
              "checkpoint_every": 8 * K, "checkpoint_minutes": 5.0, "log_every": 1 * K, "grid_every": 8 * K,
              "workers": 1, "metrics_every": 50 * K, "metrics_n": 1 * K},
}

PAPER_PRESETS = ("ffhq256", "ffhq512", "celebahq256", "lsun-cars256", "lsun-bedrooms256")
CPU_PRESETS = ("toy32", "toy64")
# Presets made for one job (automod demo's run), never picked from the data.
DEMO_PRESETS = ("demo32",)

PER_PHASE_KEYS = ("phase_starts", "lr", "margin", "batch")
METRICS = ("fid",)
# Keys that may change when a run is resumed: they do not change what is trained, only where and in
# which arithmetic (a run moved from a CPU to a GPU changes device and precision; it then stops being
# bit-identical to an uninterrupted run, as any change of hardware would make it).
RESUMABLE_KEYS = {"duration", "checkpoint_every", "checkpoint_minutes", "log_every", "grid_every", "workers",
                  "device", "threads", "precision", "cuda_graphs", "compile", "metrics", "metrics_every",
                  "metrics_n"}


# Settings added after runs were already saved, with the value that reproduces what the trainer did before
# they existed: a saved run without the key resumes only where the new command keeps that behaviour.
BEFORE_KEY = {"fade_first_phase": False, "robust_carry_over": False}


def config_differences(old: dict, new: dict) -> list[str]:
    """Settings that differ between a saved run and a new command, ignoring the resumable ones and
    settings the saved run predates when the new command keeps the behaviour it had without them."""
    out = []
    for k in sorted(set(old) | set(new)):
        if k in RESUMABLE_KEYS:
            continue
        if k not in old and k in COMMON and new.get(k) == BEFORE_KEY.get(k, COMMON[k]):
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
    for key in ("duration", "fade", "checkpoint_every", "log_every", "grid_every", "metrics_every", "metrics_n",
                "lr_rampdown"):
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
    for key in ("cuda_graphs", "compile", "fade_first_phase", "robust_carry_over"):
        if not isinstance(cfg[key], bool):
            raise UserError(f"{key} must be true or false, got {cfg[key]!r}")
    if cfg["loss"] not in ("robust", "l1"):
        raise UserError(f"loss must be 'robust' or 'l1', got '{cfg['loss']}'")
    if cfg["split"] not in ("all", "train"):
        raise UserError(f"split must be 'all' or 'train', got '{cfg['split']}'")
    if isinstance(cfg["metrics"], str):
        cfg["metrics"] = [m for m in cfg["metrics"].replace(",", " ").split() if m and m != "none"]
    unknown = [m for m in cfg["metrics"] if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric '{unknown[0]}' (known: {', '.join(METRICS)}, or none)")
    if cfg["metrics_every"] < 1 or cfg["metrics_n"] < 2:
        raise UserError("metrics_every must be at least 1 sample and metrics_n at least 2 images")
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
    """Fade-in weight of the newest block: min(1, samples into the phase / fade) (train.py:399).

    At phase 0 too when ``fade_first_phase`` (the reference: session.alpha ramps at 4² as in any phase,
    train.py:398-399; there it only keeps match_x at 1.0 and the image pool off, train.py:215 and 388-395,
    since neither the networks nor the real images fade at 4², model.py:509/602, data.py:47); 1 otherwise.
    """
    p = phase_at(cfg, samples)
    if p == 0 and not cfg.get("fade_first_phase", False):
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
