"""How far one training step's gradients in bf16 (eager, and with compiled blocks) are from fp32's.

    python benchmarks/bench_step_gradients.py RUN/state/state.safetensors DATA [--batches 6]

From a saved training state, each of ``--batches`` real batches is run as one training iteration (the
encoder step, then the decoder step) from the same weights and the same random draws, in fp32, in bf16
autocast and in bf16 with every block compiled (as ``--compile`` trains in bf16: the decoder's AdaINs in
fp32, see train/compiled.py; the figures there from before that fix had AdaIN in bf16). For every
parameter tensor it prints the relative error of the gradient against fp32's (mean over batches) and how
much of the error repeats from batch to batch ("bias": the norm of the mean difference over the mean norm
of the differences; near 1 when the error is a function of the weights, near 1/sqrt(batches) when it is
noise). Compiling takes minutes on a CPU.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile

import torch

from automod_cli.train.compiled import compile_blocks
from automod_cli.train.loop import Trainer
from automod_cli.train.schedule import step_plan
from automod_cli.train.state import load_state

VARIANTS = {"fp32": ("fp32", False), "bf16": ("bf16", False), "bf16 compiled": ("bf16", True)}


def step_gradients(tensors, meta, data: str, precision: str, compiled: bool, batches: list | None, n: int,
                   threads: int) -> tuple[list[dict[str, torch.Tensor]], list]:
    cfg = dict(meta["config"], precision=precision, compile=False, threads=threads)
    t = Trainer(cfg, data, tempfile.mkdtemp(), progress=False)
    if compiled:
        compile_blocks(t.encoder, t.decoder, bf16=t.bf16)  # as the trainer compiles (autocast at call time)
    t.load_state_dict(tensors, meta)
    plan = step_plan(cfg, t.samples)
    if batches is None:
        batches = [t.next_batch(plan).clone() for _ in range(n)]
    out = []
    for i, x in enumerate(batches):
        t.load_state_dict(tensors, meta)
        t.generator.manual_seed(1000 + i)
        torch.manual_seed(1000 + i)
        t.train_iteration(x, plan)  # leaves the encoder step's gradients in φ, the decoder step's in θ
        out.append({f"{side}.{name}": q.grad.detach().float().clone()
                    for side, net in (("encoder", t.encoder), ("decoder", t.decoder))
                    for name, q in net.named_parameters() if q.grad is not None})
    return out, batches


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("state")
    ap.add_argument("data")
    ap.add_argument("--batches", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    tensors, meta = load_state(args.state)
    grads, batches = {}, None
    for label, (precision, compiled) in VARIANTS.items():
        grads[label], batches = step_gradients(tensors, meta, args.data, precision, compiled, batches,
                                               args.batches, args.threads)
    ref, errors = grads["fp32"], {}
    print(f"state {args.state} ({meta['samples']:,} samples), {args.batches} batches")
    for label in list(VARIANTS)[1:]:
        rel, bias = {}, {}
        for name in ref[0]:
            diff = torch.stack([g[name] - r[name] for g, r in zip(grads[label], ref)]).flatten(1)
            sizes = torch.stack([r[name].norm() for r in ref]).clamp_min(1e-30)
            rel[name] = (diff.norm(dim=1) / sizes).mean().item()
            bias[name] = (diff.mean(0).norm() / diff.norm(dim=1).mean().clamp_min(1e-30)).item()
        errors[label] = rel
        print(f"{label} against fp32: median over {len(rel)} tensors: relative error "
              f"{statistics.median(rel.values()):.3f}, bias {statistics.median(bias.values()):.2f}")
        for name in rel:
            print(f"  {name:50s} {rel[name]:.4f}  bias {bias[name]:.2f}")
    ratio = [errors["bf16 compiled"][k] / errors["bf16"][k] for k in errors["bf16"] if errors["bf16"][k] > 0]
    print(f"compiled bf16's error over eager bf16's, per tensor: median {statistics.median(ratio):.2f}, "
          f"range {min(ratio):.2f}-{max(ratio):.2f}")


if __name__ == "__main__":
    main()
