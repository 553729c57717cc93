"""Benchmark inference of the 256² large automodulator (full width, RANDOM weights: speed does not
depend on the weights' values).

    .venv/bin/python benchmarks/bench_inference.py [--device cpu|cuda|auto] [--quick] [--json PATH]

Prints, for encode and decode at batch 1 and 16, in fp32 and bf16 (torch.autocast; on CPU it uses
AVX-512 BF16 / AMX where present): latency per call (median of the timed runs, after one warm-up),
throughput (images/s), the model's FLOPs per image (counted with torch.utils.flop_counter.FlopCounterMode,
which reports 2 FLOPs per multiply-add), and the fraction of the machine's matrix-multiply peak that this
reaches (peak measured in the same run with large square matmuls, fp32 and bf16). Then the whole-process
wall time of ``automod reconstruct`` on 16 images of 256² (a subprocess, model loading and image I/O
included), against the reference implementation's ~2.2 s per image (encode + decode, fp32, batch 16,
2 cores). ``--json PATH`` appends everything as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import cpu_flags, cpu_model, matmul_peak  # noqa: E402
from automod_cli.model import Automodulator, ModelConfig  # noqa: E402

RESOLUTION = 256
REFERENCE_SECONDS_PER_IMAGE = 2.2  # reference code, encode + decode, fp32, batch 16, these 2 cores
WHOLE_PROCESS_IMAGES = 16


# --- the machine --------------------------------------------------------------------------------


def machine_info(device: torch.device) -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "device": str(device),
        "load_average_1m_at_start": os.getloadavg()[0],
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# --- timing -------------------------------------------------------------------------------------

def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(fn, device: torch.device, repeats: int) -> list[float]:
    """One untimed warm-up call, then ``repeats`` timed calls (seconds each)."""
    fn()
    sync(device)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return times


def count_flops(model: Automodulator) -> dict[str, int]:
    """FLOPs per image (2 per multiply-add) counted on meta tensors (no compute): ``encode`` and
    ``decode`` as executed, and ``decode_unfused``, the decoder as written in the paper (nearest ×2
    upsampling, then a 3×3 conv), which our decoder computes as one stride-2 transposed conv."""
    with torch.device("meta"):
        meta = Automodulator(model.config).eval()
    x = torch.empty(1, 3, RESOLUTION, RESOLUTION, device="meta")
    z = torch.empty(1, model.latent_dim, device="meta")

    def unfused():
        blocks = [b for b in meta.decoder.blocks if not b.first]
        for b in blocks:
            b.conv1.forward_upsampled = lambda h, conv=b.conv1: conv(F.interpolate(h, scale_factor=2, mode="nearest"))
        try:
            return meta.decoder(z)
        finally:
            for b in blocks:
                del b.conv1.forward_upsampled

    out = {}
    with torch.no_grad():
        for name, fn in (("encode", lambda: meta.encoder(x)), ("decode", lambda: meta.decoder(z)),
                         ("decode_unfused", unfused)):
            with FlopCounterMode(display=False) as counter:
                fn()
            out[name] = int(counter.get_total_flops())
    return out


def bf16_agreement(model: Automodulator, x: torch.Tensor) -> dict[str, float]:
    """How far bf16 autocast moves the outputs from fp32 (batch of ``x``)."""
    z32 = model.encode(x, precision="fp32")
    z16 = model.encode(x, precision="bf16")
    y32 = model.decode(z32, precision="fp32")
    y16 = model.decode(z32, precision="bf16")
    return {
        "code_cosine_min": float((z32 * z16).sum(1).min()),
        "image_max_abs_diff": float((y32 - y16).abs().max()),
        "image_mean_abs_diff": float((y32 - y16).abs().mean()),
        "image_fp32_std": float(y32.std()),
    }


# --- the whole process --------------------------------------------------------------------------

def whole_process(model: Automodulator, device: torch.device, n_images: int) -> dict:
    """Wall time of ``automod reconstruct`` on n 256² PNGs, in a fresh process (imports, model loading,
    image reading, encode, decode, writing the outputs and the comparison grid)."""
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="automod-bench-") as tmp:
        tmp = Path(tmp)
        model_path = model.save(tmp / "random256.safetensors")
        images = tmp / "images"
        images.mkdir()
        # Smooth random images (a blurred noise field), so PNG decoding costs what a photo's would.
        for k in range(n_images):
            small = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
            Image.fromarray(small).resize((RESOLUTION, RESOLUTION), Image.BICUBIC).save(images / f"img_{k:02d}.png")
        exe = Path(sys.executable).with_name("automod")
        cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "automod_cli"]
        cmd += ["reconstruct", str(images), "-o", str(tmp / "out"), "-m", str(model_path),
                "--device", device.type, "--batch-size", str(n_images)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"automod reconstruct failed ({proc.returncode}):\n{proc.stderr}")
        written = len(list((tmp / "out").glob("*.png")))
    return {"command": " ".join(["automod"] + cmd[1:] if exe.exists() else cmd).replace(str(tmp), "$TMP"),
            "images": n_images, "outputs_written": written, "wall_s": wall, "s_per_image": wall / n_images,
            "reference_s_per_image": REFERENCE_SECONDS_PER_IMAGE,
            "speedup_vs_reference": REFERENCE_SECONDS_PER_IMAGE * n_images / wall}


# --- main ---------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (CUDA when present)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: batch 1 and 4, one timed run each, small peak matmul, 4 images end to end")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs per case (default 3; --quick: 1)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--no-whole-process", action="store_true", help="skip the automod reconstruct subprocess")
    parser.add_argument("--json", type=Path, default=None, help="append the results as one JSON line to this file")
    args = parser.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    name = args.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    batches = (1, 4) if args.quick else (1, 16)
    repeats = args.repeats or (1 if args.quick else 3)
    peak_n = 2048 if args.quick else (8192 if device.type == "cuda" else 4096)

    info = machine_info(device)
    print(f"machine: {info['cpu']} | {info['usable_cpus']} usable CPUs | torch {info['torch']} | "
          f"{info['torch_threads']} threads | device {device}"
          + (f" ({info['gpu']})" if "gpu" in info else "") + f" | load {info['load_average_1m_at_start']:.2f}")
    print(f"model: {RESOLUTION}² large, width 1.0, RANDOM weights (speed does not depend on them); "
          f"batch sizes {batches}, {repeats} timed run(s) after 1 warm-up, latency = median")

    # Each precision's peak in its convs' arithmetic (fp32 convs on CUDA run in TF32: see matmul_peak).
    measured = {p: matmul_peak(device, torch.float32 if p == "fp32" else torch.bfloat16, peak_n, max(repeats, 2))
                for p in args.precisions}
    peaks = {p: v for p, (v, _) in measured.items()}
    print("matmul peak (%d² square): %s" % (peak_n, ", ".join(f"{p} ({a}) {v / 1e9:.0f} GFLOP/s"
                                                              for p, (v, a) in measured.items())))

    torch.manual_seed(0)
    model = Automodulator(ModelConfig(resolution=RESOLUTION, variant="large", width=1.0)).to(device).eval()
    flops = count_flops(model)
    print(f"FLOPs per image (FlopCounterMode, 2 per multiply-add): encode {flops['encode'] / 1e9:.1f} G, "
          f"decode {flops['decode'] / 1e9:.1f} G executed ({flops['decode_unfused'] / 1e9:.1f} G as written: "
          f"upsample then 3×3 conv; ours folds the upsample into a stride-2 transposed conv); "
          f"GFLOP/s and % peak below use the executed FLOPs")

    rows = []
    header = f"{'op':7} {'prec':5} {'batch':>5} {'latency s':>10} {'min s':>8} {'img/s':>7} {'GFLOP/s':>8} {'% peak':>7}"
    print("\n" + header + "\n" + "-" * len(header))
    x_all = torch.rand(max(batches), 3, RESOLUTION, RESOLUTION, device=device) * 2 - 1
    z_all = torch.nn.functional.normalize(torch.randn(max(batches), model.latent_dim, device=device), dim=1)
    for precision in args.precisions:
        for op in ("encode", "decode"):
            for batch in batches:
                if op == "encode":
                    x = x_all[:batch]
                    fn = lambda x=x: model.encode(x, batch_size=batch, precision=precision)  # noqa: E731
                else:
                    z = z_all[:batch]
                    fn = lambda z=z: model.decode(z, batch_size=batch, precision=precision)  # noqa: E731
                times = time_calls(fn, device, repeats)
                latency = statistics.median(times)
                rate = batch / latency
                achieved = flops[op] * rate
                row = {"op": op, "precision": precision, "batch": batch, "latency_s": latency,
                       "min_s": min(times), "times_s": times, "images_per_s": rate,
                       "flop_per_s": achieved, "fraction_of_peak": achieved / peaks[precision]}
                rows.append(row)
                print(f"{op:7} {precision:5} {batch:5d} {latency:10.3f} {min(times):8.3f} {rate:7.2f} "
                      f"{achieved / 1e9:8.1f} {100 * row['fraction_of_peak']:6.1f}%", flush=True)

    def per_image(precision: str) -> float | None:
        big = [r for r in rows if r["precision"] == precision and r["batch"] == max(batches)]
        return sum(1 / r["images_per_s"] for r in big) if len(big) == 2 else None

    print()
    for precision in args.precisions:
        s = per_image(precision)
        print(f"encode + decode, {precision}, batch {max(batches)}: {s:.3f} s per image "
              f"(reference: ~{REFERENCE_SECONDS_PER_IMAGE} s fp32 on 2 cores)")

    agreement = None
    if "bf16" in args.precisions:
        agreement = bf16_agreement(model, x_all[:2])
        print(f"bf16 vs fp32 (batch 2): code cosine ≥ {agreement['code_cosine_min']:.4f}, image |Δ| max "
              f"{agreement['image_max_abs_diff']:.3f} mean {agreement['image_mean_abs_diff']:.4f} "
              f"(fp32 image std {agreement['image_fp32_std']:.3f})")

    whole = None
    if not args.no_whole_process:
        n = 4 if args.quick else WHOLE_PROCESS_IMAGES
        whole = whole_process(model.cpu(), device, n)  # last step: the model may move
        print(f"whole process: {whole['command']}\n  {whole['wall_s']:.2f} s wall for {n} images = "
              f"{whole['s_per_image']:.3f} s per image; the reference's ~{REFERENCE_SECONDS_PER_IMAGE} s per image "
              f"(encode + decode only, as the issue states it) / ours = {whole['speedup_vs_reference']:.2f}")

    info["load_average_1m_at_end"] = os.getloadavg()[0]
    print(f"load average (1 min) at start {info['load_average_1m_at_start']:.2f}, at end {info['load_average_1m_at_end']:.2f}")
    if args.json:
        record = {"benchmark": "inference", "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": info,
                  "model": {"resolution": RESOLUTION, "variant": "large", "width": 1.0, "weights": "random"},
                  "quick": args.quick, "flops_per_image": flops, "flop_convention": "2 per multiply-add",
                  "matmul_peak_flop_per_s": peaks, "matmul_peak_n": peak_n, "results": rows,
                  "bf16_agreement": agreement, "whole_process": whole}
        with open(args.json, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"appended results to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
