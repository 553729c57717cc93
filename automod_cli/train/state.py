"""Training state on disk: one safetensors file (tensors) whose metadata holds JSON (the rest).

Written atomically (temp file + rename), so a kill at any moment leaves the previous state or the
new one. Nothing is pickled: optimiser states are split into tensors (``opt.<name>.<i>.<key>``) and
JSON hyper-parameters; RNG states are byte tensors; Python's and NumPy's RNG states are JSON.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open

from ..errors import UserError
from ..io.atomic import atomic_path
from ..io.modelfile import save_safetensors

STATE_FORMAT = "automod-train-state"
STATE_VERSION = 1
STATE_NAME = "state.safetensors"


def optimizer_to_flat(opt: torch.optim.Optimizer, name: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict] = {}
    for idx, st in sd["state"].items():
        for key, value in st.items():
            if torch.is_tensor(value):
                tensors[f"opt.{name}.{idx}.{key}"] = value
            else:
                scalars.setdefault(str(idx), {})[key] = value
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def optimizer_from_flat(opt: torch.optim.Optimizer, name: str, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    state: dict[int, dict] = {}
    prefix = f"opt.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            idx, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(idx), {})[field] = value
    for idx, extra in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(extra)
    groups = [{k: (tuple(v) if k == "betas" else v) for k, v in g.items()} for g in meta["param_groups"]]
    opt.load_state_dict({"state": state, "param_groups": groups})


def rng_snapshot(generator: torch.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """All random states that can influence training: torch (CPU, CUDA), the trainer's generator,
    Python's ``random`` and NumPy's global state."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.generator": generator.get_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    py = random.getstate()
    np_state = np.random.get_state()
    meta = {"python": [py[0], list(py[1]), py[2]],
            "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])]}
    return tensors, meta


def rng_restore(generator: torch.Generator, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    generator.set_state(tensors["rng.generator"])
    cuda = [tensors[k] for k in sorted((k for k in tensors if k.startswith("rng.cuda.")),
                                       key=lambda k: int(k.rsplit(".", 1)[1]))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda[: torch.cuda.device_count()])
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))


def save_state(path: str | Path, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and JSON ``meta`` atomically (tensors copied to the CPU first)."""
    flat = {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}
    header = {"format": STATE_FORMAT, "format_version": str(STATE_VERSION), "state": json.dumps(meta)}
    with atomic_path(path, overwrite=True) as tmp:
        save_safetensors(flat, tmp, header)  # a failed write: one WriteError, the previous state kept
    return Path(path)


def load_state(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        with safe_open(str(path), framework="pt") as f:
            header = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise UserError(f"cannot read the training state ({e})", path) from None
    if header.get("format") != STATE_FORMAT or header.get("format_version") != str(STATE_VERSION):
        raise UserError(f"not an automod training state (version {STATE_VERSION})", path)
    return tensors, json.loads(header["state"])


def module_tensors(prefix: str, module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v for k, v in module.state_dict().items()}


def load_module(prefix: str, module: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    sub = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
    module.load_state_dict(sub, strict=True)
