"""Verbs on whole folders: the whole process against the model alone, and peak memory.

    python benchmarks/bench_streaming.py                       # 10,000 toy faces at 64², 1,000 at 256²
    python benchmarks/bench_streaming.py --runs 64:fp32 --old-code /path/to/older/checkout   # also that version's encode

For each run (a set and a precision) it prints, for ``automod encode`` (to an .npz) and ``automod
reconstruct`` (one PNG per input, no grid):

- whole process: images / wall-clock seconds of the command, from launch to exit (start-up, reading and
  decoding the PNGs, the model, writing the outputs);
- model only: images/s of the same model calls on images already in memory, in a fresh process started
  right before the command, the best of three passes;
- peak memory: the largest resident set of the command or of any of its DataLoader workers (``wait4``'s
  ru_maxrss); about 650 MiB of it is the Python process with torch imported.

The sets are toy faces (``automod data toyfaces``), made once under ``--data``. The 64² model is the
bundled ``toy64``; the 256² one a full-width large model with random weights (speed does not depend on
them). ``--old-code DIR`` also runs ``encode`` with the automod in DIR (fp32 runs only), to compare
memory with a version that reads every input before computing.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from automod_cli.data import toyfaces  # noqa: E402
from automod_cli.model import Automodulator, ModelConfig, bundled_model_path  # noqa: E402

SETS = {64: 10_000, 256: 1_000}
BATCH = {64: 64, 256: 16}
MODEL_ONLY_IMAGES = {64: 1024, 256: 32}
MODEL_ONLY_REPEATS = 3  # the best of three: a shared machine's load swings single figures by 2x


def ensure_set(root: Path, size: int, n: int) -> Path:
    folder = root / f"toyfaces{size}-{n}"
    done = folder / ".complete"
    if not done.exists():
        print(f"drawing {n} toy faces at {size}² into {folder} (once)", flush=True)
        toyfaces.generate(folder, n=n, size=size, seed=7, progress=None)
        done.write_text("ok\n")
    return folder


def ensure_model(root: Path, size: int) -> Path:
    if size == 64:
        return bundled_model_path()
    path = root / "random256-full-width.safetensors"
    if not path.exists():
        torch.manual_seed(0)
        Automodulator(ModelConfig(resolution=256, variant="large", width=1.0, latent_dim=512)).save(path)
    return path


def run_command(argv: list[str], code_dir: Path) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MiB) and stdout of ``python ARGV`` run in ``code_dir`` (its automod first
    on the path: ``python -m`` puts the working folder before PYTHONPATH). The peak is ``wait4``'s
    ru_maxrss: the largest resident set of the command or any worker process it waited for."""
    import tempfile

    env = dict(os.environ, PYTHONPATH=str(code_dir))
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=code_dir, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def model_only(model_path: Path, folder: Path, size: int, precision: str, verb: str) -> float:
    """images/s of the model calls alone on images in memory, in a fresh process (like the command's)."""
    code = (f"import sys, time, torch; sys.path.insert(0, {str(REPO)!r}); "
            "from pathlib import Path; from automod_cli.model import Automodulator; "
            "from automod_cli.io.images import read_image; "
            "from automod_cli.streaming import keep_freed_memory; keep_freed_memory(); "  # as the commands do
            f"m = Automodulator.load({str(model_path)!r}); "
            f"x = torch.stack([read_image(p, {size}) for p in sorted(Path({str(folder)!r}).glob('*.png'))"
            f"[:{MODEL_ONLY_IMAGES[size]}]]); b = {BATCH[size]}; "
            f"m.reconstruct(x[:b], batch_size=b, precision={precision!r}); best = 0.0\n"
            f"for _ in range({MODEL_ONLY_REPEATS}):\n"
            "    t0 = time.perf_counter()\n"
            + (f"    m.encode(x, b, {precision!r})\n" if verb == "encode" else
               f"    m.reconstruct(x, batch_size=b, precision={precision!r})\n")
            + "    best = max(best, len(x) / (time.perf_counter() - t0))\n"
            "print(best)")
    _, _, out = run_command(["-c", code], REPO)
    return float(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=Path("/tmp/automod-bench"), help="where the sets are made")
    ap.add_argument("--runs", default="64:fp32,256:bf16", help="size:precision pairs, comma-separated")
    ap.add_argument("--workers", type=int, default=None, help="--workers for the commands (default: theirs)")
    ap.add_argument("--verbs", default="encode,reconstruct", help="which of encode, reconstruct to run")
    ap.add_argument("--old-code", type=Path, default=None, help="an older checkout to compare encode's memory with")
    args = ap.parse_args()
    args.data.mkdir(parents=True, exist_ok=True)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads; load average at start "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for run in args.runs.split(","):
        size_text, precision = run.split(":")
        size = int(size_text)
        n = SETS[size]
        folder = ensure_set(args.data, size, n)
        model = ensure_model(args.data, size)
        extra = ["--batch-size", str(BATCH[size]), "--precision", precision, "--overwrite", "--no-progress"]
        if args.workers is not None:
            extra += ["--workers", str(args.workers)]
        out = args.data / "out"
        for verb, argv in (("encode", ["encode", str(folder), "-m", str(model), "-o", str(out / f"lat{size}.npz")]),
                           ("reconstruct", ["reconstruct", str(folder), "-m", str(model), "-o", str(out / f"rec{size}"),
                                            "--no-grid"])):
            if verb not in args.verbs.split(","):
                continue
            alone = model_only(model, folder, size, precision, verb)
            load = os.getloadavg()[0]
            seconds, peak, _ = run_command(["-m", "automod_cli", *argv, *extra], REPO)
            rows.append((f"{size}²", n, verb, precision, n / seconds, alone, peak, load))
            print(f"{size}² {verb} {precision}: {n / seconds:.1f} images/s whole process, {alone:.1f} "
                  f"model only, peak {peak:.0f} MiB (load {load:.2f})", flush=True)
            if verb == "encode" and args.old_code is not None and precision == "fp32":
                argv = ["-m", "automod_cli", "encode", str(folder), "-m", str(model), "-o",
                        str(out / f"old{size}.safetensors"), "--batch-size", str(BATCH[size]), "--overwrite"]
                load = os.getloadavg()[0]
                seconds, peak, _ = run_command(argv, args.old_code)
                rows.append((f"{size}²", n, "encode, older code", precision, n / seconds, alone, peak, load))
                print(f"{size}² encode with {args.old_code}: {n / seconds:.1f} images/s, peak {peak:.0f} MiB",
                      flush=True)
    print("\n| set | images | verb | precision | whole process, images/s | model only, images/s | "
          "whole / model | peak memory | load average |")
    print("|---|---|---|---|---|---|---|---|---|")
    for size, n, verb, precision, whole, alone_rate, peak, load in rows:
        print(f"| {size} | {n:,} | {verb} | {precision} | {whole:.1f} | {alone_rate:.1f} | {whole / alone_rate:.0%} | "
              f"{peak:,.0f} MiB | {load:.1f} |")


if __name__ == "__main__":
    main()
