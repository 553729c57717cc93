"""Quality of a toyfaces model (the bundled ``toy64``): reconstruction and scale-mixing figures.

    python benchmarks/eval_bundled.py [-m weights/toy64.safetensors] [--n-recon 1000] [--n-pairs 200]

Held-out faces are drawn from a seed the training set did not use (default 12345; the bundled model
was trained on seed 0). Reported:

- Reconstruction of ``--n-recon`` faces: PSNR (dB, images in [0, 1], outputs clamped) and LPIPS
  (alex v0.1) with whatever AlexNet weights are available. Without the published file (none can be
  downloaded offline) a seeded random-weight AlexNet is used and the record says so: such an LPIPS
  is a fixed random-feature distance, not comparable with published LPIPS figures.
- Mixing: for ``--n-pairs`` pairs (A, B) and each scale group g, ``mix A B --scales g`` is compared
  with the re-rendered "true" mix (B's ``g_*`` factors, A's others); a pair counts when the mix is
  closer (pixel MSE) to the true mix than to both A's and B's reconstructions (the issue's test), and,
  less sensitive to a blurry model, when the mix is nearer the true mix than A's reconstruction is.
- The test's ceiling at the model's sharpness: the model's reconstruction of the true mix (what a
  perfect mixer as blurry as the model would output), scored by the same test; and the median share
  of the way a mix moves from A's reconstruction towards that reconstructed true mix.
- Edits: for each attribute the model ships whose name is a 0/1 toyfaces factor (``smile`` →
  ``middle_smile``, ``glasses`` → ``middle_glasses``), ``--n-edit`` held-out faces WITHOUT the attribute
  are edited at the defaults of ``automod edit`` (strength 1, the attribute's own scales) and compared
  with the re-rendered truth (the same row with the factor switched on): a face counts when the edit is
  closer (pixel MSE) to the truth than the plain reconstruction is. Also the mean absolute pixel change;
  what limits the edit: the median share of the true change (truth − face, pixels) that the edit makes,
  against the share the model draws when shown the truth (its reconstruction of the truth against its
  reconstruction of the face); and whether the encoder carries the attribute along the direction (the
  median projection of E(truth) − E(face) on δ, in units of δ: 1 when the truth's code is the edit at
  strength 1, 0 when the codes do not move with the attribute).
  ``--add-attributes`` first learns the two directions, as ``weights/build_toy64.sh`` does, for a model
  without them (a training run's snapshot).
- The re-encoding cycle: the mean cosine between a code and the code of its decoding, cos(E(D(z)), z),
  for 500 random unit codes (what the training game's decoder step draws) and for the codes of the
  ``--n-recon`` held-out faces.
- What the codes carry: a ridge regression (λ 0.01) from the codes of 3,000 faces to each factor,
  scored by R² on 1,000 others; the mean R² per scale group (the texture seed, a random number, left
  out). A group whose factors the codes do not carry (R² ≈ 0) cannot be mixed, whatever the decoder.
  The mean hides single factors: the bundled model's middle mean of 0.06 holds glasses at 0.56 and hair
  style at 0.37 (an integer-coded category); ``benchmarks/scale_map.py`` gives them one by one, with
  classifier accuracies and which blocks move which factors.

``--live-decoder RUN/state/state.safetensors`` scores a run's live decoder (from its training state)
with the model file's encoder, which is the live one: mid-run the file's EMA decoder lags the encoder it
is saved with (README, "What limits the toy models").

Prints a markdown table and appends one JSON line to ``--json`` if given.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe  # noqa: E402
from automod_cli import pipeline  # noqa: E402
from automod_cli.data import toyfaces  # noqa: E402
from automod_cli.errors import MissingWeightsError  # noqa: E402
from automod_cli.io.modelfile import file_sha256  # noqa: E402
from automod_cli.metrics.psnr import reconstruction_psnr  # noqa: E402
from automod_cli.model import code_stack, edit_stack, group_ranges, parse_scales  # noqa: E402
from automod_cli.train.state import load_module, load_state  # noqa: E402


def lpips_distance(weights_dir: str | None):
    from automod_cli.metrics.lpips import LPIPSDistance

    try:
        d = LPIPSDistance("alex", weights_dir=weights_dir)
        return d, ("published" if d.weights.published else "unpublished file") + f" {d.weights.sha256[:12]}"
    except MissingWeightsError:
        import torchvision

        torch.manual_seed(0)
        tmp = Path(tempfile.mkdtemp())
        torch.save(torchvision.models.alexnet().state_dict(), tmp / "alexnet-owt-7be5be79.pth")
        d = LPIPSDistance("alex", weights_dir=tmp)
        return d, f"RANDOM AlexNet (seed 0, sha256 {d.weights.sha256[:12]}): published weights not available"


# The 0/1 and categorical factors, for which scale_map.py also scores a one-vs-rest classifier.
CATEGORICAL = ("middle_smile", "middle_glasses", "middle_glasses_round", "middle_hair_style")


def factor_probe(model, seed: int, n_fit: int = 3000, n_test: int = 1000) -> dict[str, dict[str, float]]:
    """Per factor (the texture seed, a random number, left out): the held-out R² of a ridge regression
    (λ 0.01) from the codes; for the CATEGORICAL ones also a one-vs-rest ridge classifier's accuracy and
    the majority class's share (an integer-coded category's R² understates what the codes carry)."""
    rows = toyfaces.sample_rows(n_fit + n_test, seed=seed)
    z = model.encode(toyfaces.render_tensor(rows, model.resolution)).double()
    z = torch.cat([z, torch.ones(len(z), 1, dtype=z.dtype)], 1)
    fit, test = z[:n_fit], z[n_fit:]
    solve = torch.linalg.solve(fit.T @ fit + 1e-2 * torch.eye(z.shape[1], dtype=z.dtype), fit.T)
    out = {}
    for group in toyfaces.GROUPS:
        for name in toyfaces.columns_of(group):
            if name == "fine_texture_seed":
                continue
            y = torch.tensor([float(r[name]) for r in rows], dtype=z.dtype)
            pred = test @ (solve @ y[:n_fit])
            rec = {"r2": 1.0 - ((pred - y[n_fit:]) ** 2).mean().item() / y[n_fit:].var().item()}
            if name in CATEGORICAL:
                onehot = torch.nn.functional.one_hot(y.long()).double()
                scores = test @ (solve @ onehot[:n_fit])
                rec["accuracy"] = (scores.argmax(1) == y[n_fit:].long()).double().mean().item()
                rec["majority"] = onehot[n_fit:].mean(0).max().item()
            out[name] = rec
    return out


def code_probe(model, seed: int, n_fit: int = 3000, n_test: int = 1000) -> dict[str, float]:
    """Mean held-out R² per scale group of ridge regressions from codes to the toyfaces factors."""
    probe = factor_probe(model, seed, n_fit, n_test)
    out = {}
    for group in toyfaces.GROUPS:
        scores = [rec["r2"] for name, rec in probe.items() if name in toyfaces.columns_of(group)]
        out[group] = round(sum(scores) / len(scores), 3)
    return out


def mix_test(mixed, true, ideal, rec_a, rec_b) -> dict[str, float]:
    """The mixing test for a batch of pairs: the fraction of mixes closer (pixel MSE) to the true mix than
    to both reconstructions; the weaker, blur-insensitive fraction nearer the true mix than A's
    reconstruction is; the test's ceiling at the model's sharpness (``ideal``, its reconstruction of the
    true mix: what a perfect mixer with the same blur would output, scored by the same test); and how far
    the mix moves, the median share of the way from A's reconstruction to ``ideal`` (1 = all the way)."""
    d = lambda u, v: (u.clamp(-1, 1) - v).pow(2).flatten(1).mean(1)  # noqa: E731
    closer = d(mixed, true) < torch.minimum(d(mixed, rec_a), d(mixed, rec_b))
    towards = d(mixed, true) < d(rec_a, true)
    ceiling = d(ideal, true) < torch.minimum(d(ideal, rec_a), d(ideal, rec_b))
    u, v = (mixed - rec_a).flatten(1), (ideal - rec_a).flatten(1)
    share = ((u * v).sum(1) / (v * v).sum(1).clamp_min(1e-12)).median()
    return {"closer": closer.float().mean().item(), "towards": towards.float().mean().item(),
            "ceiling": ceiling.float().mean().item(), "share": share.item()}


def learn_missing_attributes(model, seed: int = 0, n: int = 500, size: int = 20_000) -> list[str]:
    """``smile`` and ``glasses`` at the middle scales as ``weights/build_toy64.sh`` adds them (the first
    ``n`` faces of the training set, seed 0 of ``size`` faces, with the factor and ``n`` without), for a
    model that lacks them, such as a training run's snapshot. Rendered here rather than read from the
    PNGs, so the directions differ from the recipe's by the 8-bit rounding only."""
    added = []
    for name in ("smile", "glasses"):
        if name in model.attributes:
            continue
        col = f"middle_{name}"
        with_, without = [], []
        for start in range(0, size, 1000):
            for r in toyfaces.sample_rows(min(1000, size - start), seed=seed, start=start):
                (with_ if r[col] == 1 else without).append(r)
            if len(with_) >= n and len(without) >= n:
                break
        z = [torch.cat([model.encode(toyfaces.render_tensor(part[k:k + 250], model.resolution))
                        for k in range(0, min(n, len(part)), 250)]) for part in (with_[:n], without[:n])]
        model.set_attribute(name, pipeline.attribute_direction(z[0], z[1]), "middle")
        added.append(name)
    return added


def edit_test(model, seed: int, n: int) -> dict[str, dict]:
    """The edit test: attribute-free held-out faces edited at the verb's defaults, against the truth."""
    out = {}
    R = model.resolution
    for name, attr in sorted(model.attributes.items()):
        col = f"middle_{name}"
        if col not in toyfaces.FACTOR_BY_NAME:
            continue
        rows, start = [], 0
        while len(rows) < n:  # the first n faces of the seed that lack the attribute
            rows += [r for r in toyfaces.sample_rows(4 * n, seed=seed, start=start) if r[col] == 0]
            start += 4 * n
        rows = rows[:n]
        x = toyfaces.render_tensor(rows, R)
        truth = toyfaces.render_tensor([dict(r, **{col: 1}) for r in rows], R)
        z = model.encode(x)
        rec = model.decode(z).clamp(-1, 1)
        blocks = parse_scales(attr.scales or "all", model.n_blocks)
        edited = model.decode(edit_stack(code_stack(z, model.n_blocks), attr.delta.to(z), 1.0, blocks)).clamp(-1, 1)
        d = lambda u, v: (u - v).pow(2).flatten(1).mean(1)  # noqa: E731
        closer = d(edited, truth) < d(rec, truth)
        # What limits the edit: how much of the true change (truth − face, in pixels) the edit makes, against
        # how much the model draws when shown the truth itself (its reconstruction of the truth against its
        # reconstruction of the face), as medians of the projection on the true change; and whether the
        # encoder moves along the direction at all: the median projection of E(truth) − E(face) on δ, in
        # units of δ (1: the truth's code is the edit at strength 1; 0: the codes do not carry it).
        z_truth = model.encode(truth)
        change = (truth - x).flatten(1)

        def share(u: torch.Tensor) -> torch.Tensor:
            moved = ((u - rec).flatten(1) * change).sum(1)
            return (moved / change.pow(2).sum(1).clamp_min(1e-12)).median()

        delta = attr.delta.to(z)
        shift = ((z_truth - z) @ delta / delta.pow(2).sum()).median()
        out[name] = {"scales": attr.scales or "all", "n": n,
                     "fraction_closer_to_truth_than_recon": round(closer.float().mean().item(), 4),
                     "median_share_of_true_change_edit": round(share(edited).item(), 3),
                     "median_share_of_true_change_reconstructed_truth": round(
                         share(model.decode(z_truth).clamp(-1, 1)).item(), 3),
                     "median_truth_code_shift_along_delta": round(shift.item(), 3),
                     "mean_abs_change_255": round(((edited - rec).abs().mean() * 127.5).item(), 2)}
    return out


def reencoding_cycle(model, face_codes: torch.Tensor, seed: int) -> dict[str, float]:
    """Mean cos(E(D(z)), z) for random unit codes (the game's draws) and for codes of real faces."""
    g = torch.Generator().manual_seed(seed)
    random_codes = torch.nn.functional.normalize(torch.randn(500, model.latent_dim, generator=g), dim=1)
    cos = lambda z: torch.nn.functional.cosine_similarity(model.encode(model.decode(z)), z).mean().item()  # noqa: E731
    return {"random_codes": round(cos(random_codes), 4), "face_codes": round(cos(face_codes), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--n-recon", type=int, default=1000)
    ap.add_argument("--n-pairs", type=int, default=200)
    ap.add_argument("--n-edit", type=int, default=200)
    ap.add_argument("--seed", type=int, default=12345)
    ap.add_argument("--weights-dir", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--add-attributes", action="store_true", help="learn smile and glasses from the training "
                    "faces, as build_toy64.sh does, where the model lacks them (a training snapshot)")
    ap.add_argument("--live-decoder", default=None, metavar="STATE",
                    help="score the live decoder of this training state (RUN/state/state.safetensors) in place "
                    "of the model file's EMA decoder: mid-run, with the lr still high, the EMA lags far behind")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.time()
    model = pipeline.load_model(args.model)
    if args.live_decoder:
        tensors, _ = load_state(args.live_decoder)
        load_module("decoder", model.decoder, tensors)
    R = model.resolution
    learned = learn_missing_attributes(model) if args.add_attributes else []

    rows = toyfaces.sample_rows(args.n_recon, seed=args.seed)
    x = toyfaces.render_tensor(rows, R)
    codes = model.encode(x)
    recon = model.decode(codes).clamp(-1, 1)
    psnr = reconstruction_psnr(recon, x)
    dist, lpips_weights = lpips_distance(args.weights_dir)
    lp = torch.cat([dist(a, b) for a, b in zip(x.split(100), recon.split(100))]).mean().item()

    pair_rows = toyfaces.sample_rows(2 * args.n_pairs, seed=args.seed + 1)
    ra, rb = pair_rows[0::2], pair_rows[1::2]
    xa, xb = toyfaces.render_tensor(ra, R), toyfaces.render_tensor(rb, R)
    za, zb = model.encode(xa), model.encode(xb)
    rec_a, rec_b = model.decode(za), model.decode(zb)
    mixing = {}
    for group, blocks in group_ranges(model.n_blocks).items():
        if not blocks:
            continue
        mixed = model.decode(pipeline.mix_codes(za, zb, blocks, model.n_blocks))
        true = toyfaces.render_tensor([toyfaces.mix_rows(a, b, (group,)) for a, b in zip(ra, rb)], R)
        t = mix_test(mixed, true, model.reconstruct(true), rec_a, rec_b)
        mixing[group] = {"scales": "-".join(str(4 * 2**b) for b in (blocks[0], blocks[-1])),
                         "fraction_closer_to_true_mix": round(t["closer"], 4),
                         "fraction_nearer_true_mix_than_recon_a": round(t["towards"], 4),
                         "ceiling_fraction_reconstructed_true_mix": round(t["ceiling"], 4),
                         "median_share_of_the_way": round(t["share"], 3)}

    cycle = reencoding_cycle(model, codes, args.seed + 4)
    probe = code_probe(model, args.seed + 2)
    edits = edit_test(model, args.seed + 3, args.n_edit)

    record = {
        "metric": "toyfaces_quality", "model": str(model.source_path), "model_sha256": file_sha256(model.source_path),
        "decoder": f"live, from {args.live_decoder}" if args.live_decoder else "the model file's",
        "resolution": R, "n_recon": args.n_recon, "n_pairs": args.n_pairs, "seed": args.seed,
        "psnr_db": round(psnr, 3), "lpips_alex": round(lp, 4), "lpips_weights": lpips_weights,
        "mixing": mixing, "edits": edits, "attributes_learned_here": learned, "code_probe_r2": probe,
        "reencoding_cosine": cycle,
        "machine": describe(),
        "wall_s": round(time.time() - t0, 1),
    }
    print("| held-out toy faces | value |\n|---|---|")
    if args.live_decoder:
        print(f"| decoder | the live one, from {args.live_decoder} |")
    print(f"| reconstruction PSNR ({args.n_recon} faces) | {psnr:.2f} dB |")
    print(f"| reconstruction LPIPS alex ({lpips_weights}) | {lp:.4f} |")
    for g, m in mixing.items():
        print(f"| mix {g} ({m['scales']}): closer to the true mix than to both reconstructions, "
              f"{args.n_pairs} pairs | {100 * m['fraction_closer_to_true_mix']:.1f}% |")
        print(f"| mix {g} ({m['scales']}): nearer the true mix than A's reconstruction is, "
              f"{args.n_pairs} pairs | {100 * m['fraction_nearer_true_mix_than_recon_a']:.1f}% |")
        print(f"| mix {g}: the test's ceiling at this sharpness (the reconstructed true mix, scored the same "
              f"way) | {100 * m['ceiling_fraction_reconstructed_true_mix']:.1f}% |")
        print(f"| mix {g}: median share of the way from A's reconstruction to the reconstructed true mix | "
              f"{m['median_share_of_the_way']:.2f} |")
    for name, e in edits.items():
        how = " (direction learned here)" if name in learned else ""
        print(f"| edit {name}{how} (k = 1, scales {e['scales']}) on {e['n']} faces without it: closer to the "
              f"truth than the reconstruction | {100 * e['fraction_closer_to_truth_than_recon']:.1f}% |")
        print(f"| edit {name}: median share of the true change (truth − face) that the edit makes / that the "
              f"model's reconstruction of the truth makes | {e['median_share_of_true_change_edit']:.2f} / "
              f"{e['median_share_of_true_change_reconstructed_truth']:.2f} |")
        print(f"| edit {name}: median shift of the truth's code along the direction, in units of it (1: the "
              f"edit; 0: the codes do not carry it) | {e['median_truth_code_shift_along_delta']:.2f} |")
        print(f"| edit {name}: mean absolute pixel change | {e['mean_abs_change_255']:.2f}/255 |")
    print(f"| re-encoding cycle cos(E(D(z)), z): 500 random unit codes / the {args.n_recon} faces' codes | "
          f"{cycle['random_codes']:.3f} / {cycle['face_codes']:.3f} |")
    for g, r2 in probe.items():
        print(f"| codes carry the {g} factors: mean held-out R² of a ridge probe | {r2:.2f} |")
    if args.json:
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
