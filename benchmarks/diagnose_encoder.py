"""Which loss term moves a run's encoder, and how far has it collapsed its codes?

    python benchmarks/diagnose_encoder.py RUN/state/state.safetensors DATA [--images 256] [--out FILE]

From a saved training state, over the first ``--images`` faces of DATA (the run's training data: no
mirroring, real images faded as at the state's sample count, fakes from fresh random codes, no image
pool), in batches of the run's size: each term of the encoder's loss as the trainer builds it
(``Trainer._encoder_loss``, weighted as in ``loss_e``: kl_weight·KL of the real codes, recon_weight·
match_x·recon, the clamped KL gap), the norm of its gradient on the encoder's weights and the cosine of
that gradient with Adam's first moment (the direction the encoder has been moving in); and the codes:
the mean cosine between two real faces' codes (``real_code_cos``, as the training log has it since it
was added), the same for the fakes, and the cosine of random codes with the codes of their own renders.
Prints one JSON line; ``--out`` appends it to a JSON-lines file.

What it found in the shared toy64 run (the encoder collapsing the real faces' codes in bf16) is in the
README, "What limits the toy models".
"""

from __future__ import annotations

import argparse
import json
import tempfile

import torch

from automod_cli.data.datasets import ImageFolderDataset, fade_real_images
from automod_cli.metrics.results import append_record
from automod_cli.train import losses
from automod_cli.train.loop import Trainer
from automod_cli.train.networks import run_decoder
from automod_cli.train.schedule import step_plan
from automod_cli.train.state import load_state


def diagnose(state: str, data: str, images: int, threads: int) -> dict:
    torch.set_num_threads(threads)
    tensors, meta = load_state(state)
    cfg = dict(meta["config"], device="cpu", precision="fp32", compile=False, cuda_graphs=False, threads=threads)
    t = Trainer(cfg, data, tempfile.mkdtemp(), progress=False, say=lambda _: None)
    t.load_state_dict(tensors, meta)
    plan = step_plan(cfg, t.samples)
    p, alpha, b = plan["phase"], plan["alpha"], plan["batch"]
    faces = ImageFolderDataset(data, resolution=plan["resolution"], mirror=False)
    params = list(t.encoder.parameters())
    moment = torch.cat([t.opt_e.state[q]["exp_avg"].reshape(-1) for q in params])
    weights = {"kl_real": cfg["kl_weight"], "recon": cfg["recon_weight"] * plan["match_x"], "kl_gap": 1.0}
    grads = {k: torch.zeros_like(moment) for k in weights}
    stats: dict[str, float] = {}
    codes_rng = torch.Generator().manual_seed(1)
    n_batches = max(images // b, 1)
    for i in range(n_batches):
        x = torch.stack([faces.read(j) for j in range(i * b, (i + 1) * b)])
        x = fade_real_images(x, alpha) if p > 0 else x
        z = torch.nn.functional.normalize(torch.randn(b, cfg["latent_dim"], generator=codes_rng), dim=1)
        terms = t._encoder_loss(x, plan, z, z, None, 0, None, None)
        for k, w in weights.items():
            g = (torch.autograd.grad(w * terms[k], params, retain_graph=True, allow_unused=True)
                 if terms[k].requires_grad else [None] * len(params))
            grads[k] += torch.cat([(gi if gi is not None else torch.zeros_like(q)).reshape(-1)
                                   for gi, q in zip(g, params)]) / n_batches
        row = {k: terms[k].detach() for k in ("kl_real", "kl_fake", "recon", "kl_gap", "real_code_cos")}
        with torch.no_grad():  # the fakes again: _encoder_loss keeps their codes to itself
            fakes = run_decoder(t.decoder, z, p, alpha, cfg["layer_noise"])[0].float()
            z_fake = t.encoder(fakes, p, alpha).float()
            row.update(fake_code_cos=losses.mean_pairwise_cosine(z_fake), cycle_cos=(z_fake * z).sum(1).mean())
        for k, v in row.items():
            stats[k] = stats.get(k, 0.0) + float(v) / n_batches
    cos = lambda u, v: float(u @ v / (u.norm() * v.norm() + 1e-30))  # noqa: E731
    total = sum(grads.values())
    out = {"state": state, "samples": t.samples, "images": n_batches * b, "lr": plan["lr"],
           **{k: round(v, 4) for k, v in stats.items()}, "first_moment_norm": round(float(moment.norm()), 5)}
    for k, g in {**grads, "total": total}.items():
        out[f"grad_{k}_norm"] = round(float(g.norm()), 5)
        out[f"grad_{k}_cos_moment"] = round(cos(g, moment), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("state", help="a training state (RUN/state/state.safetensors)")
    ap.add_argument("data", help="the run's training images")
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--out", help="append the JSON line to this file")
    args = ap.parse_args()
    record = diagnose(args.state, args.data, args.images, args.threads)
    print(json.dumps(record))
    if args.out:
        append_record(record, args.out)


if __name__ == "__main__":
    main()
