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
--val-n faces with outputs clamped, the last batch's loss, seconds, images/s with the evaluations
included).

Switches that isolate one suspect at a time (the figures in the README's "What limits the toy models"):

    --codes free --n-train 64 --val-n 64    # the decoder alone memorising 64 faces from a free code each
    --codes factors                         # the decoder alone, fed the faces' true factors
    --n-train 64 --val-seed 0 --val-n 64    # the autoencoder memorising 64 faces (scored on them)
    --no-encoder-sn                         # the encoder's convs without spectral normalisation
    --layout-jitter 0.25                    # nearly aligned faces (layout spread cut to a quarter)
    --loss mse                              # squared error instead of L1
    --loss laplacian                        # L1 on a Laplacian pyramid: level j (0 finest) weighs 2^j
    --loss deep                             # L1 at every block's to_rgb too, against the downsampled face
    --canvas learned                        # a learned 4x4 canvas (StyleGAN) instead of the constant ones
    --canvas coords                         # x and y ramps in place of two channels after every block
    --style-lr 10                           # the AdaIN style layers' lr multiplied by 10
    --lr 3e-3 --style-lr 0.333              # the convs' (and codes') lr 3x, the style layers' kept
    --adain rms                             # AdaIN scales by the channel's RMS, no mean subtracted
    --adain pixel                           # pixel norm (over channels) in place of instance norm
    --no-blur                               # no blur after the upsampling convs
    --output skip                           # StyleGAN2's skip output: every block's to_rgb, summed
    --no-texture --layout-jitter 0          # faces all in one place, without texture
    --decoder plain                         # a plain conv decoder of the same size, no AdaIN (--codes free)

``--codes free`` learns one code per training face (the decoder and the codes train; the encoder is
unused) and scores the first --val-n training faces; ``--codes factors`` feeds the decoder
normalize(P·f), f a face's factors standardised on the training faces (the texture seed left out) and P a
fixed random 512×F matrix, and scores held-out faces as usual. Neither flips faces (a flipped face would
no longer match its code).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import types
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe as machine  # noqa: E402
from automod_cli.data import toyfaces  # noqa: E402
from automod_cli.metrics.psnr import reconstruction_psnr  # noqa: E402
from automod_cli.model import Automodulator, ModelConfig  # noqa: E402
from automod_cli.model.layers import AdaIN, Blur, SpectralNormConv2d  # noqa: E402
from automod_cli.train.losses import l1_loss  # noqa: E402
from automod_cli.train.networks import advance_power_iteration  # noqa: E402
from automod_cli.train.schedule import lr_at, parse_count  # noqa: E402


LAYOUT = ("coarse_x", "coarse_y", "coarse_size", "coarse_tilt")
LOSS_NOTES = {"l1": "L1 only", "mse": "MSE only", "laplacian": "Laplacian-pyramid L1 only",
              "deep": "L1 on the image and on every block's to_rgb"}  # what a saved model's note says


def with_layout_jitter(rows: list[dict], q: float) -> list[dict]:
    """The rows with the spread of position, size and tilt about their range's centre scaled by q."""
    if q == 1.0:
        return rows
    out = []
    for row in rows:
        row = dict(row)
        for name in LAYOUT:
            f = toyfaces.FACTOR_BY_NAME[name]
            centre = (f.low + f.high) / 2
            row[name] = centre + q * (row[name] - centre)
        out.append(toyfaces.canonical_row(row))
    return out


def factor_matrix(rows: list[dict]) -> torch.Tensor:
    names = [f.name for f in toyfaces.FACTORS if f.name != "fine_texture_seed"]
    return torch.tensor([[float(r[n]) for n in names] for r in rows])


def laplacian(x: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """A Laplacian pyramid, finest level first: each level minus its 2x-downsampled, upsampled self."""
    out = []
    for _ in range(levels):
        down = F.avg_pool2d(x, 2)
        out.append(x - F.interpolate(down, scale_factor=2, mode="bilinear", align_corners=False))
        x = down
    return out + [x]


def with_coordinates(h: torch.Tensor) -> torch.Tensor:
    """h with its last two channels replaced by x and y ramps from -1 to 1."""
    b, _, height, width = h.shape
    ys = torch.linspace(-1, 1, height, dtype=h.dtype).view(1, 1, height, 1).expand(b, 1, height, width)
    xs = torch.linspace(-1, 1, width, dtype=h.dtype).view(1, 1, 1, width).expand(b, 1, height, width)
    return torch.cat([h[:, :-2], xs, ys], 1)


def adain_rms(self: AdaIN, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """--adain rms: γ·x/RMS(x) + β per sample and channel (the mean is kept)."""
    gamma, beta = self.style(code).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
    return gamma * x * x.square().mean(dim=(2, 3), keepdim=True).add(1e-5).rsqrt() + beta


def adain_pixel(self: AdaIN, x: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
    """--adain pixel: γ·x/RMS over the channels at each pixel + β (StyleGAN's pixel norm, modulated)."""
    gamma, beta = self.style(code).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
    return gamma * x * x.square().mean(dim=1, keepdim=True).add(1e-8).rsqrt() + beta


def skip_output(dec, codes: torch.Tensor, noise: bool = False) -> torch.Tensor:
    """--output skip: the sum of every block's to_rgb, each upsampled (bilinear) to the next scale."""
    codes = dec.code_stack(codes, dec.n_blocks)
    h, image = None, None
    for i in range(dec.n_blocks):
        h = dec.features(codes, i, i + 1, h, noise=noise)
        rgb = dec.to_rgb[i](h)
        image = rgb if image is None else rgb + F.interpolate(image, scale_factor=2, mode="bilinear",
                                                               align_corners=False)
    return image


class PlainDecoder(torch.nn.Module):
    """--decoder plain: the code through a Linear to a 4x4 map, then per block a nearest upsample and two
    3x3 convs with leaky ReLUs (the automodulator's channels; PyTorch's default init), then a 1x1 to RGB."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        ch = config.decoder_channels
        self.first = torch.nn.Linear(config.latent_dim, ch[0] * 16)
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(
            torch.nn.Upsample(scale_factor=2), torch.nn.Conv2d(ch[i - 1], ch[i], 3, padding=1),
            torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(ch[i], ch[i], 3, padding=1), torch.nn.LeakyReLU(0.2))
            for i in range(1, len(ch)))
        self.to_rgb = torch.nn.Conv2d(ch[-1], 3, 1)

    def forward(self, codes: torch.Tensor, noise: bool = False) -> torch.Tensor:
        h = F.leaky_relu(self.first(codes).view(codes.shape[0], -1, 4, 4), 0.2)
        for block in self.blocks:
            h = block(h)
        return self.to_rgb(h)


@torch.no_grad()
def psnr(decoder, codes_of_x: Callable[[], torch.Tensor], x: torch.Tensor) -> float:
    """Reconstruction PSNR of x (metrics.psnr) from its codes, the decoder in eval mode for the call."""
    decoder.eval()
    recon = torch.cat([decoder(c) for c in codes_of_x().split(100)])
    decoder.train()
    return reconstruction_psnr(recon, x)


def parse_args() -> argparse.Namespace:
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
    ap.add_argument("--codes", choices=("encoder", "free", "factors"), default="encoder",
                    help="where the decoder's codes come from (see above)")
    ap.add_argument("--loss", choices=("l1", "mse", "laplacian", "deep"), default="l1")
    ap.add_argument("--canvas", choices=("ones", "learned", "coords"), default="ones",
                    help="the decoder's 4x4 input and position information (see above)")
    ap.add_argument("--style-lr", type=float, default=1.0, help="lr multiplier of the AdaIN style layers")
    ap.add_argument("--no-encoder-sn", action="store_true", help="encoder convs without spectral normalisation")
    ap.add_argument("--adain", choices=("instance", "rms", "pixel"), default="instance",
                    help="what AdaIN normalises by (see above)")
    ap.add_argument("--no-blur", action="store_true", help="no blur after the decoder's upsampling convs")
    ap.add_argument("--output", choices=("top", "skip"), default="top",
                    help="the image from the top block's to_rgb, or every block's upsampled and summed")
    ap.add_argument("--decoder", choices=("automodulator", "plain"), default="automodulator",
                    help="plain: Linear from the code to the 4x4 map, upsampling convs, no AdaIN")
    ap.add_argument("--no-texture", action="store_true", help="faces without their texture")
    ap.add_argument("--layout-jitter", type=float, default=1.0,
                    help="scale the spread of x, y, size and tilt about their centres (1: the toyfaces data)")
    args = ap.parse_args()
    if args.save and (args.codes != "encoder" or args.no_encoder_sn or args.decoder != "automodulator"
                      or reshaped_decoder(args)):
        ap.error("--save writes an autoencoder: only with --codes encoder, the encoder's spectral norm and "
                 "the automodulator's decoder as it is")
    if args.decoder == "plain" and (args.codes == "encoder" or args.loss == "deep" or reshaped_decoder(args)
                                    or args.style_lr != 1.0):
        ap.error("--decoder plain: only with --codes free or factors, and no other decoder switch")
    return args


def reshaped_decoder(args) -> bool:
    """Whether a switch changes what the automodulator's decoder computes (not only how it trains)."""
    return args.adain != "instance" or args.no_blur or args.output != "top" or args.canvas != "ones"


def probe_rows(rows: list[dict], args) -> list[dict]:
    """Rows as the switches have them: --layout-jitter, then --no-texture."""
    rows = with_layout_jitter(rows, args.layout_jitter)
    if args.no_texture:
        rows = [toyfaces.canonical_row(dict(row, fine_texture_amount=0.0)) for row in rows]
    return rows


def faces(args) -> tuple[list[dict], torch.Tensor, list[dict], torch.Tensor]:
    """Training rows and uint8 images (seed 0), validation rows and images in [-1, 1]."""
    train_rows = probe_rows(toyfaces.sample_rows(parse_count(args.n_train), 0), args)
    x_train = torch.from_numpy(toyfaces.render_array(train_rows, args.resolution)).permute(0, 3, 1, 2).contiguous()
    if args.codes == "free":  # a free code exists for training faces only: score the first --val-n of them
        val_rows = train_rows[: args.val_n]
    else:
        val_rows = probe_rows(toyfaces.sample_rows(args.val_n, args.val_seed), args)
    return train_rows, x_train, val_rows, toyfaces.render_tensor(val_rows, args.resolution)


def apply_switches(args, enc, dec) -> list[torch.Tensor]:
    """--no-encoder-sn, --canvas, --adain, --no-blur and --output on the networks; for --loss deep, the
    list its hooks fill with each block's features in training."""
    if args.no_encoder_sn:
        for m in enc.modules():
            if isinstance(m, SpectralNormConv2d):
                m.normalized_weight = (lambda m=m: m.weight)
    if args.canvas == "learned":
        canvas = dec.constant
        del dec.constant  # the buffer, replaced by a parameter of the same shape
        dec.constant = torch.nn.Parameter(torch.randn_like(canvas))
    elif args.canvas == "coords":
        for block in dec.blocks:
            block.register_forward_hook(lambda module, inputs, h: with_coordinates(h))
    for m in dec.modules():
        if isinstance(m, AdaIN) and args.adain != "instance":
            m.forward = types.MethodType(adain_rms if args.adain == "rms" else adain_pixel, m)
        if isinstance(m, Blur) and args.no_blur:
            m.forward = lambda x: x
    if args.output == "skip":
        dec.forward = types.MethodType(skip_output, dec)
    block_outputs: list[torch.Tensor] = []
    if args.loss == "deep":
        for block in dec.blocks:
            block.register_forward_hook(
                lambda module, inputs, h: block_outputs.append(h) if module.training else None)
    return block_outputs


def code_source(args, model, enc, train_rows, val_rows, x_val) -> tuple[list, Callable, Callable]:
    """(extra trained parameters, codes_of(x, idx) for a training batch, val_codes() for the held-out faces)."""
    if args.codes == "encoder":
        return (list(enc.parameters()), lambda x, idx: enc(x),
                lambda: torch.cat([enc(xb) for xb in x_val.split(100)]))
    if args.codes == "free":
        table = torch.nn.Parameter(torch.randn(len(train_rows), model.config.latent_dim))
        return ([table], lambda x, idx: F.normalize(table[idx], dim=1),
                lambda: F.normalize(table[: len(val_rows)], dim=1))
    f_train = factor_matrix(train_rows)
    mean, std = f_train.mean(0), f_train.std(0).clamp_min(1e-8)
    proj = torch.randn(model.config.latent_dim, f_train.shape[1], generator=torch.Generator().manual_seed(5))
    project = lambda f: F.normalize(((f - mean) / std) @ proj.T, dim=1)  # noqa: E731
    z_train, z_val = project(f_train), project(factor_matrix(val_rows))
    return [], lambda x, idx: z_train[idx], lambda: z_val


def loss_function(args, dec, block_outputs: list[torch.Tensor]) -> Callable:
    def loss_of(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if args.loss == "mse":
            return (y - x).pow(2).mean()
        if args.loss == "laplacian":
            return sum(l1_loss(a - b) * 2 ** j for j, (a, b) in enumerate(zip(laplacian(y), laplacian(x))))
        loss = l1_loss(y - x)
        if args.loss == "deep":  # the last block's output is y itself
            top = len(block_outputs) - 1
            for i, h in enumerate(block_outputs[:-1]):
                loss = loss + l1_loss(dec.to_rgb[i](h.float()) - F.avg_pool2d(x, 2 ** (top - i)))
            block_outputs.clear()
        return loss
    return loss_of


def describe(args, n_params: int) -> str:
    return (f"# width {args.width}, {n_params / 1e6:.2f}M trained parameters, batch {args.batch}, "
            f"{'bf16 autocast' if args.bf16 else 'fp32'}, codes: {args.codes}, loss {args.loss}"
            + (", encoder without spectral norm" if args.no_encoder_sn else "")
            + (f", layout jitter x{args.layout_jitter}" if args.layout_jitter != 1.0 else "")
            + (f", canvas {args.canvas}" if args.canvas != "ones" else "")
            + (f", style lr x{args.style_lr:g}" if args.style_lr != 1.0 else "")
            + (f", AdaIN by {args.adain}" if args.adain != "instance" else "")
            + (", no blur" if args.no_blur else "") + (", skip output" if args.output == "skip" else "")
            + (", plain decoder" if args.decoder == "plain" else "") + (", no texture" if args.no_texture else ""))


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    samples, every = parse_count(args.samples), parse_count(args.eval_every)
    schedule = {"lr": [args.lr], "phase_starts": [0], "duration": samples,
                "lr_rampdown": parse_count(args.ramp), "lr_final": 0.1}
    print(f"# {machine()}", flush=True)
    train_rows, x_train, val_rows, x_val = faces(args)

    model = Automodulator(ModelConfig(resolution=args.resolution, width=args.width))
    # The encoder stays in eval mode with one explicit power iteration per step, as in the trainer
    # (train/loop.py: the spectral-norm u advances once per step, not once per forward).
    enc = model.encoder.eval()
    dec = (PlainDecoder(model.config) if args.decoder == "plain" else model.decoder).train()
    block_outputs = apply_switches(args, enc, dec)
    extra, codes_of, val_codes = code_source(args, model, enc, train_rows, val_rows, x_val)
    params = list(dec.parameters()) + extra
    loss_of = loss_function(args, dec, block_outputs)
    style = {id(p) for m in dec.modules() if isinstance(m, AdaIN) for p in m.style.parameters()}
    opt = torch.optim.Adam([{"params": [p for p in params if id(p) not in style], "lr_mult": 1.0},
                            {"params": [p for p in params if id(p) in style], "lr_mult": args.style_lr}],
                           lr=args.lr, betas=(args.beta1, 0.99))
    print(describe(args, sum(p.numel() for p in params)), flush=True)  # what trains
    g = torch.Generator().manual_seed(args.seed + 1)
    seen, next_eval, t0 = 0, every, time.time()
    while seen < samples:
        for group in opt.param_groups:
            group["lr"] = lr_at(schedule, seen) * group["lr_mult"]
        idx = torch.randint(0, len(x_train), (args.batch,), generator=g)
        x = x_train[idx].float() / 127.5 - 1
        if args.codes == "encoder":  # a flipped face no longer matches its free code or its factors
            flip = torch.rand(args.batch, generator=g) < 0.5
            x[flip] = x[flip].flip(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            y = dec(codes_of(x, idx), noise=False)
        loss = loss_of(y.float(), x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if args.codes == "encoder" and not args.no_encoder_sn:
            advance_power_iteration(enc, model.config.n_blocks - 1)
        seen += args.batch
        if seen >= next_eval or seen >= samples:
            next_eval += every
            elapsed = time.time() - t0
            print(json.dumps({"samples": seen, "psnr": round(psnr(dec, val_codes, x_val), 2),
                              args.loss: round(loss.item(), 4), "s": round(elapsed),
                              "img_s": round(seen / elapsed, 1)}), flush=True)
    if args.save:
        model.provenance = {"samples_seen": seen, "note": "benchmarks/autoencoder_probe.py: plain autoencoder, "
                            f"{LOSS_NOTES[args.loss]}, no training game", "args": vars(args)}
        model.save(args.save)
        print(f"# saved {args.save}")


if __name__ == "__main__":
    main()
