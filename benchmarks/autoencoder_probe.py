"""What the networks alone can learn of toy faces: the automodulator's encoder and decoder trained as a
plain autoencoder (L1 reconstruction only, no game, straight at the top resolution), with reconstruction
PSNR on held-out faces as it goes. Issue 14's controlled runs: it separates what width and samples buy
from what the training game costs (the figures in train/schedule.py beside the toy presets and the
README's "What limits the toy models" came from it).

    .venv/bin/python benchmarks/autoencoder_probe.py --beta1 0 --samples 40k --eval-every 20k --threads 1
    .venv/bin/python benchmarks/autoencoder_probe.py --width 0.0625 --samples 90k --ramp 36k
    .venv/bin/python benchmarks/autoencoder_probe.py --width 0.125 --samples 150k --ramp 60k --bf16 \\
        --save ae_w8.safetensors   # then: benchmarks/eval_bundled.py -m ae_w8.safetensors --seed 777

Training faces are the toyfaces of seed 0 (the ones `automod data toyfaces --seed 0` writes), drawn in
memory; held-out faces come from --val-seed (777, the development seed; never the test seed). The
optimiser is the toy64 preset's (Adam β 0.9 / 0.99, lr 1e-3, batch 16, random flips) with its lr ramp
(train/schedule.py lr_at: a half cosine to 0.1× over the last --ramp samples); the encoder's
spectral-norm power iteration advances once per step, as in the trainer. The decoder runs without
layer noise. Prints the machine, then one JSON line per evaluation (samples, PSNR in dB over
--val-n faces with outputs clamped, the last batch's L1, seconds, images/s with the evaluations
included).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe as machine  # noqa: E402
from automod_cli.data import toyfaces  # noqa: E402
from automod_cli.metrics.psnr import reconstruction_psnr  # noqa: E402
from automod_cli.model import Automodulator, ModelConfig  # noqa: E402
from automod_cli.train.losses import l1_loss  # noqa: E402
from automod_cli.train.networks import advance_power_iteration  # noqa: E402
from automod_cli.train.schedule import lr_at, parse_count  # noqa: E402


@torch.no_grad()
def psnr(model: Automodulator, x: torch.Tensor) -> float:
    """Reconstruction PSNR of x (metrics.psnr), the decoder in eval mode for the call."""
    model.decoder.eval()
    recon = torch.cat([model.decoder(model.encoder(xb)) for xb in x.split(100)])
    model.decoder.train()
    return reconstruction_psnr(recon, x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--width", type=float, default=1 / 16)
    ap.add_argument("--resolution", type=int, default=64)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--beta1", type=float, default=0.9)
    ap.add_argument("--samples", default="90k")
    ap.add_argument("--ramp", default="0", help="samples at the end over which the lr falls to 0.1x")
    ap.add_argument("--eval-every", default="15k")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for the forward passes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-train", default="20k", help="training faces (seed 0)")
    ap.add_argument("--val-seed", type=int, default=777)
    ap.add_argument("--val-n", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save", default=None, help="write the final model here (a model file)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    samples, every = parse_count(args.samples), parse_count(args.eval_every)
    schedule = {"lr": [args.lr], "phase_starts": [0], "duration": samples,
                "lr_rampdown": parse_count(args.ramp), "lr_final": 0.1}
    print(f"# {machine()}", flush=True)
    x_train = torch.from_numpy(toyfaces.render_array(toyfaces.sample_rows(parse_count(args.n_train), 0),
                                                     args.resolution)).permute(0, 3, 1, 2).contiguous()
    x_val = toyfaces.render_tensor(toyfaces.sample_rows(args.val_n, args.val_seed), args.resolution)

    model = Automodulator(ModelConfig(resolution=args.resolution, width=args.width))
    # The encoder stays in eval mode with one explicit power iteration per step, as in the trainer
    # (train/loop.py: the spectral-norm u advances once per step, not once per forward).
    enc, dec = model.encoder.eval(), model.decoder.train()
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(args.beta1, 0.99))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"# width {args.width}, {n_params / 1e6:.2f}M parameters, batch {args.batch}, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}", flush=True)
    g = torch.Generator().manual_seed(args.seed + 1)
    seen, next_eval, t0 = 0, every, time.time()
    while seen < samples:
        for group in opt.param_groups:
            group["lr"] = lr_at(schedule, seen)
        idx = torch.randint(0, len(x_train), (args.batch,), generator=g)
        x = x_train[idx].float() / 127.5 - 1
        flip = torch.rand(args.batch, generator=g) < 0.5
        x[flip] = x[flip].flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            y = dec(enc(x), noise=False)
        loss = l1_loss(y.float() - x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        advance_power_iteration(enc, model.config.n_blocks - 1)
        seen += args.batch
        if seen >= next_eval or seen >= samples:
            next_eval += every
            elapsed = time.time() - t0
            print(json.dumps({"samples": seen, "psnr": round(psnr(model, x_val), 2), "l1": round(loss.item(), 4),
                              "s": round(elapsed), "img_s": round(seen / elapsed, 1)}), flush=True)
    if args.save:
        model.provenance = {"samples_seen": seen, "note": "benchmarks/autoencoder_probe.py: plain autoencoder, "
                            "L1 only, no training game", "args": vars(args)}
        model.save(args.save)
        print(f"# saved {args.save}")


if __name__ == "__main__":
    main()
