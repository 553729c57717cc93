"""Choosing the device (``auto`` is CUDA when present, else the CPU) and what it computes fast."""

from __future__ import annotations

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device '{name}' asked for, but CUDA is not available here")
    return dev


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX-512 BF16 or AMX). Without it oneDNN runs bf16 through
    conversions around fp32 arithmetic, slower than fp32 (figures: README, Speed). (PyTorch's own
    ``mkldnn._is_mkldnn_bf16_supported`` asks for plain AVX-512 only, on which bf16 is still slower.)"""
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check() for check in checks if check is not None)


def bf16_warning(device: torch.device) -> str | None:
    """One line for bf16 asked for on a CPU without bf16 arithmetic, else None."""
    if device.type != "cpu" or cpu_computes_bf16():
        return None
    return ("warning: this CPU has no bf16 arithmetic (AVX-512 BF16 or AMX), so bf16 runs emulated, "
            "slower than fp32 here: --precision fp32 is the faster choice")
