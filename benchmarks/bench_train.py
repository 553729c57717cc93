"""Training throughput of the full-width reference architecture (one encoder step + one decoder
step per iteration), against the FLOPs per iteration and this machine's measured matmul peak in the
convs' arithmetic (fp32 on a CPU; bf16 under autocast, or TF32 for fp32, on CUDA).

    .venv/bin/python benchmarks/bench_train.py                       # 32², 64², 256²
    .venv/bin/python benchmarks/bench_train.py --res 32 --batch 16 --iterations 3 --threads 2

``--toy-run PRECISIONS`` instead trains short toy32 runs end to end (the trainer as `automod train` runs
it, on freshly drawn toy faces), one per precision (and seed), and reports images/s, the last losses and
the reconstruction PSNR of held-out toy faces: what fp32 against bf16 costs or gains in a real run.

    .venv/bin/python benchmarks/bench_train.py --toy-run fp32,bf16 --toy-seeds 0 --toy-samples 32k

The reference implementation needs ~17.6 s per iteration at 32², batch 16, fp32 on a 2-core CPU.
Iterations are timed at α = 1 of the phase (image pool on, style mixing on), after one warm-up
iteration (with --cuda-graphs: after every step has been captured; with --compile: after compiling).
``--preset toy64 --width 0.125`` times the game of a CPU preset instead of the paper's (the shared run's:
`--res 64 --batch 32 --precision bf16`). ``--toy-run fp32 --compile`` (or ``bf16``: AdaIN then computes in
fp32, train/compiled.py) trains the toy runs compiled. The benchmark's --precision auto runs bf16 autocast
on CUDA (--precision fp32: TF32 convs, the paper presets' default in training).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe as machine, matmul_peak  # noqa: E402
from automod_cli.train.loop import Trainer  # noqa: E402
from automod_cli.train.report import resolved_precision  # noqa: E402
from automod_cli.train.schedule import resolve_config, step_plan  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench(res: int, batch: int, iterations: int, device: torch.device, data: Path, width: float,
          precision: str = "auto", cuda_graphs: bool = False, preset: str | None = None,
          compile_blocks: bool = False) -> dict:
    cfg = resolve_config(preset or ("ffhq256" if res <= 256 else "ffhq512"),
                         {"resolution": res, "batch": batch, "width": width, "workers": 0,
                          "device": str(device), "duration": 10**9, "precision": precision,
                          "cuda_graphs": cuda_graphs})
    trainer = Trainer(cfg, data, Path(tempfile.mkdtemp()) / "run", device=device, progress=False)
    p = len(cfg["phase_starts"]) - 1
    plan = step_plan(cfg, cfg["phase_starts"][p] + cfg["fade"])  # top phase, α = 1
    x = torch.rand(batch, 3, res, res, device=device) * 2 - 1
    with FlopCounterMode(display=False) as counter:
        trainer.train_iteration(x, plan)  # also the warm-up
    flops = counter.get_total_flops()
    if compile_blocks:  # compiled after the counted eager iteration (the counter cannot see into kernels)
        from automod_cli.train.compiled import compile_blocks as compile_networks

        compile_networks(trainer.encoder, trainer.decoder, trainer.bf16)
        t = time.perf_counter()
        trainer.train_iteration(x, plan)  # compiles
        print(f"   ({res}²: compiling took {time.perf_counter() - t:.0f} s)", flush=True)
    if trainer.graphs is not None:  # warm up and capture every step (2 steps × p crossover blocks) first
        for _ in range(40 * p):
            if trainer.graphs.captures >= 2 * p or trainer.graphs.failed:
                break
            trainer.train_iteration(x, plan)
        if trainer.graphs.captures < 2 * p:
            raise SystemExit(f"CUDA graphs: {trainer.graphs.captures} of {2 * p} steps captured")
    times = []
    for _ in range(iterations):
        sync(device)
        t = time.perf_counter()
        trainer.train_iteration(x, plan)
        sync(device)
        times.append(time.perf_counter() - t)
    s = statistics.median(times)
    return {"res": res, "batch": batch, "s_per_it": s, "img_per_s": batch / s, "gflop_per_it": flops / 1e9,
            "achieved_gflops": flops / s / 1e9,
            "enc_params": sum(q.numel() for q in trainer.encoder.parameters()),
            "dec_params": sum(q.numel() for q in trainer.decoder.parameters())}


def toy_run(precision: str, seed: int, samples: int, resolution: int, data: Path, out: Path, threads: int,
            n_eval: int, compile_blocks: bool = False) -> dict:
    """One toy32 run cut to ``resolution``, trained to ``samples``; its speed, last losses and quality."""
    import json

    from automod_cli.data import toyfaces
    from automod_cli.metrics.psnr import reconstruction_psnr
    from automod_cli.model import Automodulator
    from automod_cli.train.report import cosine

    cfg = resolve_config("toy32", {"resolution": resolution, "duration": samples, "precision": precision,
                                   "device": "cpu", "workers": 0, "seed": seed, "threads": threads,
                                   "grid_every": 10**9, "checkpoint_every": samples, "log_every": 1000,
                                   "compile": compile_blocks})
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    Trainer(cfg, data, out, progress=False).run()
    wall = time.perf_counter() - t0
    log = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    top = cfg["phase_starts"][-1] + cfg["fade"]
    stable = [r for r in log if r["samples"] > top]  # the top phase at α = 1
    last = log[-max(1, len(log) // 10):]  # the last tenth of the run
    model = Automodulator.load(out / "model.safetensors")
    with torch.no_grad():
        x = toyfaces.render_tensor(toyfaces.sample_rows(n_eval, seed=424242), resolution)
        psnr = reconstruction_psnr(model.reconstruct(x), x)
    mean = lambda key: statistics.mean(r[key] for r in last)  # noqa: E731
    return {"precision": precision, "seed": seed, "samples": samples, "wall_s": wall,
            "img_per_s": samples / wall,
            "img_per_s_top": statistics.median(r["images_per_s"] for r in stable) if stable else float("nan"),
            "loss_e": mean("loss_e"), "recon": mean("recon"), "kl_real": mean("kl_real"),
            "cosine": statistics.mean(cosine(r, cfg["latent_dim"]) for r in last),
            "consistency": mean("consistency"), "psnr": psnr}


def toy_runs(args) -> None:
    from automod_cli.data import toyfaces
    from automod_cli.train.schedule import parse_count

    samples = parse_count(args.toy_samples)
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    print(f"machine: {machine()}")
    print(f"toy32 cut to {args.toy_res}², {samples} samples per run, {threads} threads"
          + (", compiled blocks" if args.compile else "") + ", PSNR of "
          f"{args.toy_eval} held-out toy faces (seed 424242)")
    print(f"{'precision':>9} {'seed':>4} {'wall':>8} {'img/s':>7} {'img/s top':>9} {'E loss':>7} {'recon':>7} "
          f"{'KL real':>7} {'cosine':>7} {'cons':>7} {'PSNR':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "faces"
        toyfaces.generate(data, n=args.toy_faces, size=max(32, args.toy_res), seed=0)
        for seed in [int(x) for x in args.toy_seeds.split(",")]:
            for precision in args.toy_run.split(","):
                r = toy_run(precision, seed, samples, args.toy_res, data, Path(tmp) / f"{precision}-{seed}",
                            threads, args.toy_eval, args.compile)
                print(f"{r['precision']:>9} {r['seed']:>4} {r['wall_s']:>7.0f}s {r['img_per_s']:>7.1f} "
                      f"{r['img_per_s_top']:>9.1f} {r['loss_e']:>7.4f} {r['recon']:>7.4f} {r['kl_real']:>7.3f} "
                      f"{r['cosine']:>7.3f} {r['consistency']:>7.4f} {r['psnr']:>6.2f}dB", flush=True)
    print("(losses: means over the last tenth of each run's log lines; img/s top: median at the top phase, α = 1)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--res", default="32,64,256", help="resolutions, comma-separated")
    ap.add_argument("--batch", default=None, help="batch per resolution, e.g. 16,16,4 (default: 16, 16, 4)")
    ap.add_argument("--iterations", default=None, help="timed iterations per resolution (default: 3, 2, 1)")
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier (1.0 = the paper)")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--precision", default="auto", help="auto (bf16 on CUDA, fp32 on CPU), fp32 or bf16")
    ap.add_argument("--cuda-graphs", action="store_true", help="time replayed CUDA graphs of the steps")
    ap.add_argument("--compile", action="store_true", help="time the networks with compiled blocks (after compiling)")
    ap.add_argument("--preset", default=None, help="the game and losses of this preset (default: the paper's "
                    "ffhq256, or ffhq512 above 256²), e.g. toy64")
    ap.add_argument("--toy-run", default=None, help="precisions, e.g. fp32,bf16: short toy32 runs end to end")
    ap.add_argument("--toy-seeds", default="0", help="seeds of the toy runs, comma-separated")
    ap.add_argument("--toy-samples", default="32k", help="samples per toy run")
    ap.add_argument("--toy-res", type=int, default=16, help="top resolution of the toy runs")
    ap.add_argument("--toy-faces", type=int, default=2000, help="training faces drawn for the toy runs")
    ap.add_argument("--toy-eval", type=int, default=500, help="held-out faces for the PSNR")
    args = ap.parse_args()
    if args.toy_run:
        toy_runs(args)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" \
        else torch.device(args.device)
    resolutions = [int(r) for r in args.res.split(",")]
    defaults_b = {32: 16, 64: 16, 256: 4}
    defaults_i = {32: 3, 64: 2, 256: 1}
    batches = [int(b) for b in args.batch.split(",")] if args.batch else [defaults_b.get(r, 4) for r in resolutions]
    iters = [int(i) for i in args.iterations.split(",")] if args.iterations else \
        [defaults_i.get(r, 1) for r in resolutions]

    print(f"machine: {machine()}, precision {args.precision}" + (", CUDA graphs" if args.cuda_graphs else "")
          + (", compiled blocks" if args.compile else "") + (f", preset {args.preset}" if args.preset else ""))
    # The peak in the arithmetic of the trainer's convs: bf16 under autocast, TF32 for fp32 on CUDA.
    bf16 = resolved_precision({"precision": args.precision}, device.type) == "bf16"
    peak, arith = matmul_peak(device, torch.bfloat16 if bf16 else torch.float32)
    peak /= 1e9
    print(f"measured {arith} matmul peak: {peak:.1f} GFLOP/s")
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        rng = np.random.default_rng(0)
        for i in range(4):  # the trainer wants a data set; the benchmark feeds its own batch
            Image.fromarray((rng.random((8, 8, 3)) * 255).astype(np.uint8)).save(data / f"{i}.png")
        print(f"{'res':>5} {'batch':>5} {'s/it':>8} {'img/s':>8} {'GFLOP/it':>9} {'GFLOP/s':>8} {'of peak':>7}"
              f"  params (enc/dec)")
        for res, b, n in zip(resolutions, batches, iters):
            r = bench(res, b, n, device, data, args.width, args.precision, args.cuda_graphs, args.preset,
                      args.compile)
            print(f"{r['res']:>5} {r['batch']:>5} {r['s_per_it']:>8.3f} {r['img_per_s']:>8.2f} "
                  f"{r['gflop_per_it']:>9.1f} {r['achieved_gflops']:>8.1f} {r['achieved_gflops'] / peak:>7.1%}"
                  f"  {r['enc_params'] / 1e6:.1f}M/{r['dec_params'] / 1e6:.1f}M", flush=True)
    print("(reference implementation: ~17.6 s/it at 32², batch 16, fp32, on a 2-core CPU)")


if __name__ == "__main__":
    main()
