"""Training with each network block compiled by ``torch.compile`` (the ``compile`` setting; off by default).

Why: in eager mode most of a small model's training time goes to elementwise work between the
convolutions (bias, leaky ReLU, AdaIN's statistics and modulation, and their backward passes), one
pass over the feature maps each. Inductor fuses a block's elementwise work into a few loops. Measured
on a 2-core Xeon with AMX (``benchmarks/bench_train.py --preset toy64 --width 0.125 --res 64 --batch 32
--precision bf16 [--compile]``): 32.4 images/s eager, 58.4 compiled; profiled, the convolutions were 31%
of an eager iteration and most of a compiled one.

How: each encoder and decoder block is compiled on its own (``nn.Module.compile``), not the whole
step: a block's graph does not depend on the phase, the fade's α, the crossover block or the pool, so
nothing recompiles as they change. What recompiles is a new shape (a new resolution or batch size:
about a minute on 2 CPU cores the first time) and grad against no-grad calls (the image grids).
Parameter and buffer names are unchanged: states and model files are those of an eager run, and a run
may be resumed with compile switched on or off (the arithmetic then differs in rounding, as with a
change of precision). Compiled code is deterministic, so a compiled run resumes bit-exactly.

On a CPU, bf16 training keeps its feature maps channels-last (train/loop.py: Trainer.channels_last);
Inductor is told to keep that layout at the convolutions inside a compiled block
(``force_layout_optimization``), without which they ran in the default layout (46.5 against 50.5
images/s in one profiling run).
fp32 on a CPU keeps the default layout, as it does eagerly (model/layers.py: channels_last).
"""

from __future__ import annotations

import torch

from ..errors import UserError
from ..model.decoder import Decoder
from ..model.encoder import Encoder

# Every block of a network shares one forward (one code object), and each shape and grad mode is a
# separate compiled entry: 5 blocks × 2 modes × a batch change exceed dynamo's default of 8 entries,
# after which it would run the rest eagerly without saying so.
RECOMPILE_LIMIT = 64


def compile_blocks(encoder: Encoder, decoder: Decoder, channels_last: bool) -> None:
    """Compile every block of both networks in place (their first calls compile)."""
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
    on_cpu = next(encoder.parameters()).device.type == "cpu"
    # fallback_random: layer noise drawn by torch's own generator, as eagerly (Inductor's would draw other
    # numbers from the same seed, and a run would depend on whether it was compiled beyond rounding).
    options = {"fallback_random": True}
    if on_cpu and channels_last:
        options["force_layout_optimization"] = True
    for block in list(encoder.blocks) + list(decoder.blocks):
        block.compile(dynamic=False, options=options)


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
