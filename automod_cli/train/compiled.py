"""Training with each network block compiled by ``torch.compile`` (the ``compile`` setting; off by
default; fp32 only).

Why: in eager mode most of a small model's training time goes to elementwise work between the
convolutions (bias, leaky ReLU, AdaIN's statistics and modulation, and their backward passes), one
pass over the feature maps each. Inductor fuses a block's elementwise work into a few loops.

How: each encoder and decoder block is compiled on its own (``nn.Module.compile``), not the whole
step: a block's graph does not depend on the phase, the fade's α, the crossover block or the pool, so
nothing recompiles as they change. What recompiles is a new shape (a new resolution or batch size:
about a minute on 2 CPU cores the first time) and grad against no-grad calls (the image grids).
Parameter and buffer names are unchanged: states and model files are those of an eager run, and a run
may be resumed with compile switched on or off (the arithmetic then differs in rounding). Compiled
code is deterministic, so a compiled run resumes bit-exactly.

Not with bf16 autocast (refused): measured on a 2-core Xeon with AMX, toy32 cut to 16², 40k samples
(``benchmarks/bench_train.py --toy-run bf16 --toy-samples 40k --toy-res 16 --threads 1 [--compile]``),
compiled bf16 runs reconstructed held-out faces 1.2-1.3 dB worse than eager ones (18.36 / 18.53 against
19.66 / 19.72 dB, seeds 0 / 1), while fp32 compiled was no worse (19.14 against 18.85, seed 0); each
block's outputs and gradients are as close to fp32's as eager bf16's are, so the cause is not found yet.
Part of it is where values are rounded: with Inductor's ``emulate_precision_casts`` (rounding to bf16
wherever eager rounds, instead of keeping fused intermediates in fp32) compiled bf16 gave 18.86 / 19.06
dB, as eager fp32 does (18.85), still short of eager bf16 (19.66 / 19.72; 19.49 with 2 threads, so run
to run the figures move by about 0.2 dB).
A 64² bf16 run compiled from 370k samples got worse for 300k samples (reconstruction loss 0.12 -> 0.24).
Compiled bf16 ran 1.8x the eager images/s (toy64 width 1/8 at 64²).
Whole training steps do differ, though (``benchmarks/bench_step_gradients.py STATE DATA``): from the
shared run's state at 292k samples (64², batch 32), six real batches, each step from the same weights and
draws, the gradients of every parameter tensor were compared with fp32's. Eager bf16's are 15% off
(median relative error over the 60 tensors), compiled bf16's 21%: 1.5x eager's (1.3x-2.2x per tensor,
1.6x in the encoder, 1.5x in the decoder), spread over every block rather than in one place. Most of
either error repeats from batch to batch at fixed weights (the mean difference is 0.84-0.88 of its
per-batch size), so it is a bias of those weights' rounding, not noise that averages out over steps. It
is not general: from a 32² demo32 state (40k samples, width 1/16, two batches) compiled bf16's error was
0.64x eager's (12% against 17%), so this alone does not explain the worse toy runs.
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..model.decoder import Decoder
from ..model.encoder import Encoder

# Every block of a network shares one forward (one code object), and each shape and grad mode is a
# separate compiled entry: 5 blocks × 2 modes × a batch change exceed dynamo's default of 8 entries,
# after which it would run the rest eagerly without saying so. Set under its older name,
# ``cache_size_limit``: newer PyTorch keeps it as an alias of ``recompile_limit``, and torch 2.3 (the oldest
# pyproject allows) has no ``recompile_limit``.
RECOMPILE_LIMIT = 64


BF16_REFUSED = ("compile with bf16 autocast trained worse in every measured run (toy runs 1.2 dB lower PSNR; "
                "see train/compiled.py): train with --precision fp32, or without --compile")


def compile_blocks(encoder: Encoder, decoder: Decoder, bf16: bool) -> None:
    """Compile every block of both networks in place (their first calls compile)."""
    if bf16:
        raise UserError(BF16_REFUSED)
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, RECOMPILE_LIMIT)
    # fallback_random: layer noise drawn by torch's own generator, as eagerly (Inductor's would draw other
    # numbers from the same seed, and a run would depend on whether it was compiled beyond rounding).
    for block in list(encoder.blocks) + list(decoder.blocks):
        block.compile(dynamic=False, options={"fallback_random": True})


def compile_failure(error: Exception) -> UserError | None:
    """A UserError saying that compiling failed (no C++ compiler, say), or None for any other error."""
    from torch._dynamo.exc import BackendCompilerFailed

    try:
        from torch._inductor.exc import InductorError
    except ImportError:  # older torch
        InductorError = BackendCompilerFailed  # noqa: N806
    if not isinstance(error, (BackendCompilerFailed, InductorError)):
        return None
    detail = str(error).strip().splitlines()
    why = next((line.strip() for line in detail if line.strip()), type(error).__name__)
    return UserError(f"compiling the networks (the compile setting) failed: {why[:300]}; train without "
                     f"--compile, or install a C++ compiler (torch.compile builds its CPU kernels with one)")
