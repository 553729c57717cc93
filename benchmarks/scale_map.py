"""Which of a toyfaces model's scales carry which factors: per-factor code probes and a mixing map.

    python benchmarks/scale_map.py [-m weights/toy64.safetensors] [--seed 777] [--n-pairs 200]

``eval_bundled.py`` scores the three named scale groups against the three toyfaces factor groups and
averages its code probe over each group; this breaks both apart, to say where a group fails:

- Per factor, the held-out R² of a ridge regression (λ 0.01) from the codes of 3,000 faces to the
  factor, scored on 1,000 others (eval_bundled's probe, faces of ``--seed`` + 2). For the 0/1 and
  categorical factors (smile, glasses, frame shape, hair style) also the accuracy of a one-vs-rest ridge
  classifier next to the majority class's share: the R² of an integer-coded category (hair style 0-4)
  understates what the codes carry, and a group's mean R² hides its best factors.
- A mixing map: for ``--n-pairs`` pairs (A, B) of ``--seed`` + 1 (eval_bundled's pairs), each set of
  the model's blocks is taken from B (``mix A B --scales S``) and scored against the re-rendered true
  mix of each factor set (B's factors of that set, A's others) by eval_bundled's test (the mix closer to
  the true mix than to both reconstructions), with the test's ceiling at the model's sharpness (its
  reconstruction of the true mix, scored the same way) and the median share of the way from A's
  reconstruction to that one. A factor set whose ceiling is 0 is one the decoder does not draw; a
  factor set whose best share comes from blocks outside its named group is drawn at other scales.

Prints markdown tables; ``--json`` appends one JSON line.
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

from machine import describe  # noqa: E402
from automod_cli import pipeline  # noqa: E402
from automod_cli.data import toyfaces  # noqa: E402
from automod_cli.io.modelfile import file_sha256  # noqa: E402
from automod_cli.model.scales import describe_blocks  # noqa: E402
from automod_cli.train.state import load_module, load_state  # noqa: E402
from eval_bundled import factor_probe, mix_test  # noqa: E402


def factor_sets() -> dict[str, list[str]]:
    """The three factor groups, the middle group taken apart, and the coarse group with hair style."""
    middle = toyfaces.columns_of("middle")
    return {
        "coarse": list(toyfaces.columns_of("coarse")),
        "middle": list(middle),
        "fine": list(toyfaces.columns_of("fine")),
        "middle: hair style": ["middle_hair_style"],
        "middle: glasses": ["middle_glasses", "middle_glasses_round"],
        "middle: eyes, mouth, brows": [c for c in middle if not c.startswith(("middle_hair", "middle_glasses"))],
        "coarse + hair style": list(toyfaces.columns_of("coarse")) + ["middle_hair_style"],
    }


def mixing_map(model, seed: int, n_pairs: int) -> dict[str, dict[str, dict]]:
    """For each contiguous block range S and factor set F: test pass rate, ceiling and median share."""
    R, nb = model.resolution, model.n_blocks
    rows = toyfaces.sample_rows(2 * n_pairs, seed=seed)
    ra, rb = rows[0::2], rows[1::2]
    za, zb = model.encode(toyfaces.render_tensor(ra, R)), model.encode(toyfaces.render_tensor(rb, R))
    rec_a, rec_b = model.decode(za), model.decode(zb)
    truths = {}
    for name, cols in factor_sets().items():
        true = toyfaces.render_tensor([dict(a, **{c: b[c] for c in cols}) for a, b in zip(ra, rb)], R)
        truths[name] = (true, model.reconstruct(true))
    out = {}
    for lo in range(nb):
        for hi in range(lo, nb):
            blocks = list(range(lo, hi + 1))
            mixed = model.decode(pipeline.mix_codes(za, zb, blocks, nb))
            out[describe_blocks(blocks)] = {
                name: {k: round(v, 3) for k, v in mix_test(mixed, true, ideal, rec_a, rec_b).items()
                       if k in ("closer", "ceiling", "share")}
                for name, (true, ideal) in truths.items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("--seed", type=int, default=777, help="validation seed (pairs: seed+1, probe: seed+2)")
    ap.add_argument("--n-pairs", type=int, default=200)
    ap.add_argument("--live-decoder", default=None, metavar="STATE",
                    help="score the live decoder of this training state, as eval_bundled.py does")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.time()
    model = pipeline.load_model(args.model)
    if args.live_decoder:
        load_module("decoder", model.decoder, load_state(args.live_decoder)[0])
    probe = {name: {k: round(v, 3) for k, v in rec.items()}
             for name, rec in factor_probe(model, args.seed + 2).items()}
    mixes = mixing_map(model, args.seed + 1, args.n_pairs)

    print(f"model {args.model or 'bundled toy64'}; seed {args.seed}; {args.n_pairs} pairs; {describe()}\n")
    print("| factor | probe R² | one-vs-rest accuracy (majority) |\n|---|---|---|")
    for name, rec in probe.items():
        acc = f"{rec['accuracy']:.3f} ({rec['majority']:.3f})" if "accuracy" in rec else ""
        print(f"| {name} | {rec['r2']:.3f} | {acc} |")
    names = list(factor_sets())
    print("\nmixing test, % of pairs passing / ceiling at this sharpness, median share of the way; rows: "
          "the scales taken from B, columns: the factors taken from B in the true mix\n")
    print("| scales | " + " | ".join(names) + " |\n" + "|---" * (len(names) + 1) + "|")
    for scales, row in mixes.items():
        cells = [f"{100 * row[n]['closer']:.0f} / {100 * row[n]['ceiling']:.0f}%, {row[n]['share']:.2f}" for n in names]
        print(f"| {scales} | " + " | ".join(cells) + " |")
    print(f"\n{time.time() - t0:.0f} s")
    if args.json:
        record = {"model": args.model, "sha256": file_sha256(args.model) if args.model else None,
                  "live_decoder": args.live_decoder, "seed": args.seed, "n_pairs": args.n_pairs,
                  "machine": describe(), "probe": probe, "mixing_map": mixes,
                  "command": "python " + " ".join(sys.argv)}
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
