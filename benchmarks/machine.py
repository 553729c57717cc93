"""What a benchmark ran on: one description shared by every script in benchmarks/."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def _cpuinfo_field(name: str) -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(name):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def cpu_flags() -> list[str]:
    """The vector/matrix extensions that decide fp32 and bf16 speed."""
    flags = (_cpuinfo_field("flags") or "").split()
    return sorted(f for f in flags if f.startswith(("avx512_bf16", "amx", "avx512f", "avx2")))


def describe() -> str:
    import torch

    desc = f"{cpu_model()}, {os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads"
    if torch.cuda.is_available():
        desc += f", GPU {torch.cuda.get_device_name(0)}"
    try:
        desc += f", load {os.getloadavg()[0]:.1f}"
    except OSError:
        pass
    return desc


def matmul_peak(device, dtype, n: int = 2048, repeats: int = 5) -> tuple[float, str]:
    """Best FLOP/s of an n×n @ n×n matmul (2n³ FLOPs) in the arithmetic a conv of ``dtype`` uses here,
    and that arithmetic's name. fp32 convs on CUDA run in TF32 while cuDNN allows it (PyTorch's default),
    so the fp32 peak there is measured with TF32 matmuls: measured in plain fp32 it is ~15× lower on an
    H200 and convs were reported at over 300% of it."""
    import time

    import torch

    tf32 = device.type == "cuda" and dtype == torch.float32 and torch.backends.cudnn.allow_tf32
    name = "tf32" if tf32 else {torch.float32: "fp32", torch.bfloat16: "bf16"}.get(dtype, str(dtype))
    g = torch.Generator(device="cpu").manual_seed(0)
    a = torch.randn(n, n, generator=g).to(device, dtype)
    b = torch.randn(n, n, generator=g).to(device, dtype)
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        best = float("inf")
        for k in range(repeats + 1):  # the first call is a warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            t = time.perf_counter()
            torch.mm(a, b)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if k:
                best = min(best, time.perf_counter() - t)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved
    return 2 * n**3 / best, name
