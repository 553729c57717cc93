"""Training with each network block compiled by ``torch.compile`` (the ``compile`` setting; off by
default).

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

With bf16 autocast the decoder's AdaINs compute in fp32 (``adains_in_fp32``). Compiled with AdaIN in bf16
(refused from 2026-12-02 to 12-05), toy runs reconstructed held-out faces 1.2-1.3 dB worse than eager
bf16, and a 64² run compiled from 370k samples got worse for 300k samples (reconstruction loss 0.12 ->
0.24). AdaIN's precision was most of it. Measured on a 2-core Xeon with AMX, 1 thread a run, seeds 0 / 1
(``benchmarks/bench_train.py --toy-run bf16 --toy-samples 40k --toy-res 16 --threads 1 --toy-seeds S
[--compile]``; toy32 cut to 16², PSNR of 500 held-out faces):

    eager fp32                                18.85 / 18.75 dB
    eager bf16                                19.66 / 19.72 dB   268 images/s at the top phase
    compiled bf16, AdaIN in bf16 (before)     18.36 / 18.53 dB   440
    eager bf16, AdaIN in fp32                 19.25 / 19.41 dB   330
    compiled bf16, AdaIN in fp32 (now)        19.10 / 19.47 dB   445

so compiled and eager agree once AdaIN computes in fp32 (19.29 against 19.33 dB, the mean of two seeds;
``emulate_precision_casts``, rounding where eager rounds, had recovered only 18.86 / 19.06). Eager bf16
rounds inside AdaIN and scores 0.35 dB higher still on these runs; why that helps is not known. On toy32
at 32² for 100k samples (``--toy-samples 100k --toy-res 32``, seed 0) compiled bf16 scored 19.51 against
eager bf16's 19.81 dB at 1.48x its images/s (183 against 124), its reconstruction loss level with eager's
all the way (0.1447 against 0.1456 at 57k samples), not drifting up. At 64² the fifth candidate run of
benchmarks/gpu_session.sh (width 1/4, from 2026-12-05) has trained compiled in bf16 from 68,672 samples
on, in CPU legs, past the 300k over which the old degradation showed, and has not degraded as that run
had; its training reconstruction loss and its live decoder's scores on the validation faces after each leg
are in the README under "What limits the toy models".

Before that fix, whole training steps differed too (``benchmarks/bench_step_gradients.py STATE DATA``):
from the shared run's state at 292k samples (64², batch 32), six real batches, each step from the same
weights and draws, eager bf16's gradients were 15% off fp32's (median relative error over the 60
tensors), compiled bf16's 21%, spread over every block; most of either error repeated from batch to
batch at fixed weights (a bias of those weights' rounding, not noise that averages out over steps).
"""

from __future__ import annotations

import types

import torch

from ..errors import UserError
from ..model.decoder import Decoder
from ..model.encoder import Encoder
from ..model.layers import AdaIN

# Every block of a network shares one forward (one code object), and each shape and grad mode is a
# separate compiled entry: 5 blocks × 2 modes × a batch change exceed dynamo's default of 8 entries,
# after which it would run the rest eagerly without saying so. Set under its older name,
# ``cache_size_limit``: newer PyTorch keeps it as an alias of ``recompile_limit``, and torch 2.3 (the oldest
# pyproject allows) has no ``recompile_limit``.
RECOMPILE_LIMIT = 64


def adains_in_fp32(net: torch.nn.Module) -> None:
    """Make every AdaIN in ``net`` (or ``net`` itself, an AdaIN) compute in fp32 under autocast (its style
    Linear, statistics and modulation), its output in its input's dtype; on fp32 inputs without autocast it
    computes what it did."""
    for m in net.modules():
        if isinstance(m, AdaIN):
            m.forward = types.MethodType(_adain_forward_in_fp32, m)  # a deepcopy rebinds it to the copy


def _adain_forward_in_fp32(self: AdaIN, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    with torch.autocast(x.device.type, enabled=False):
        return AdaIN.forward(self, x.float(), code.float()).to(x.dtype)


def compile_blocks(encoder: Encoder, decoder: Decoder, bf16: bool) -> None:
    """Compile every block of both networks in place (their first calls compile); for bf16 autocast, the
    decoder's AdaINs compute in fp32 (see above)."""
    if bf16:
        adains_in_fp32(decoder)
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
