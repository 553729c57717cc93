"""A training run packed small enough to travel, and unpacked whole again (for ``benchmarks/gpu_session.sh``).

    python benchmarks/run_transfer.py pack RUN DEST [--max-mib 54] [--keep-grids 4]
    python benchmarks/run_transfer.py unpack SRC RUN

Why: a GPU call returns at most 64 MiB (16 MiB a file, 8 files) and takes at most 64 MiB of the working
tree with it (the device tool's limits), and a run's snapshot is committed to git each time. A width-1/4
toy64 run's state at 64² is 77 MB and its model file 19 MB: too much. ``pack`` writes one ``run.tar.gz``
in 15 MiB parts (``run.tar.gz.part00``, ...) into DEST (replaced atomically) holding the model file, the
training state less what the model file holds, and the rest of the run folder but TensorBoard, the run's
lock and all but the newest ``--keep-grids`` grids. Two things make the state fit:

- The model file holds the encoder and the EMA decoder, the very tensors the state holds as
  ``encoder.*`` and ``ema.*`` (``Trainer.snapshot``, written with the state at each checkpoint). They are
  left out of the state where they equal the model file's bit for bit, and ``unpack`` takes them back
  from it. Exact.
- Only when the exact archive exceeds ``--max-mib``: the optimisers' moments (``opt.*``) and the image
  pool (``pool.*``) go in bf16, half their size, the weights untouched. Not exact: a run resumed from such
  a state goes on with its moments and pooled images rounded once to bf16 (a relative change of at most
  2⁻⁹), so that resume is not bit-exact across that transfer. ``pack`` says so, and the unpacked state's
  metadata lists the rounded tensors (``transfer_rounded``). Beyond the limit even so, ``pack`` fails.

``unpack`` writes the run folder (the previous one kept aside as ``RUN.previous.<time>``) with the state
under its original tensor names, dtypes and metadata.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

FORMAT = "automod-run-transfer"
ROUNDED_PREFIXES = ("opt.", "pool.")
FROM_MODEL = {"encoder.": "encoder.", "ema.": "decoder."}  # state prefix -> model file prefix


def read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def model_key(state_key: str) -> str | None:
    for prefix, model_prefix in FROM_MODEL.items():
        if state_key.startswith(prefix):
            return model_prefix + state_key[len(prefix):]
    return None


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))


def shrink(state: dict[str, torch.Tensor], header: dict[str, str], model: dict[str, torch.Tensor], out: Path,
           round_moments: bool) -> dict[str, int]:
    """Write the state less the tensors ``model`` holds bit for bit (and, rounding, its moments and pool
    in bf16) to ``out``."""
    rest, from_model, rounded, dtypes = {}, {}, [], {}
    for k, v in state.items():
        mk = model_key(k)
        if mk is not None and mk in model and same_bits(v, model[mk]):
            from_model[k] = mk
        elif round_moments and k.startswith(ROUNDED_PREFIXES) and v.dtype == torch.float32 and v.numel() > 1:
            rest[k] = v.to(torch.bfloat16)
            rounded.append(k)
            dtypes[k] = "float32"
        else:
            rest[k] = v
    meta = {"format": FORMAT, "state_header": json.dumps(header),
            "from_model": json.dumps(from_model), "rounded": json.dumps(dtypes)}
    save_file(rest, str(out), metadata=meta)
    return {"from_model": len(from_model), "rounded": len(rounded), "kept": len(rest) - len(rounded)}


def restore(rest_path: Path, model_path: Path, out: Path) -> dict[str, Any]:
    """The state ``shrink`` wrote to ``rest_path`` made whole again, at ``out``; its counts and header."""
    rest, meta = read(rest_path)
    if meta.get("format") != FORMAT:
        raise SystemExit(f"{rest_path}: not a state written by run_transfer.py pack")
    model, _ = read(model_path)
    from_model, rounded = json.loads(meta["from_model"]), json.loads(meta["rounded"])
    missing = sorted(mk for mk in from_model.values() if mk not in model)
    if missing:
        raise SystemExit(f"{model_path}: lacks {len(missing)} tensors the state needs (e.g. {missing[0]}): "
                         "not the model file the state was shrunk with")
    state = {k: (v.to(getattr(torch, rounded[k])) if k in rounded else v) for k, v in rest.items()}
    state.update({k: model[mk] for k, mk in from_model.items()})
    header = json.loads(meta["state_header"])
    if rounded:
        header["transfer_rounded"] = json.dumps(sorted(rounded))
    save_file({k: v.contiguous() for k, v in state.items()}, str(out), metadata=header)
    return {"tensors": len(state), "from_model": len(from_model), "rounded": len(rounded), "header": header}


PART_BYTES = 15 * 2**20


def run_files(run: Path, keep_grids: int) -> list[str]:
    """What goes along besides the model and state: all but TensorBoard, the lock, temporary files and
    the older grids (their names sort by sample count)."""
    grids = sorted(p.relative_to(run).as_posix() for p in (run / "grids").glob("*") if p.is_file())
    old = set(grids[:-keep_grids] if keep_grids else grids)
    out = []
    for p in sorted(run.rglob("*")):
        rel = p.relative_to(run).as_posix()
        if (p.is_file() and rel not in old and rel != "model.safetensors" and rel.split("/")[0] not in
                ("state", "tensorboard") and not rel.endswith(".tmp") and p.name != "train.lock"):
            out.append(rel)
    return out


def state_samples(header: dict[str, str]) -> str:
    """The sample count a training state was saved at (its log may end a little before it)."""
    try:
        return f"{json.loads(header['state'])['samples']:,}"
    except (KeyError, TypeError, ValueError):
        return "?"


def replace_dir(tmp: Path, dest: Path, keep_previous: bool) -> None:
    if dest.exists():
        suffix = f".previous.{time.strftime('%Y%m%d%H%M%S')}" if keep_previous else ".old"
        aside = dest.with_name(dest.name + suffix)
        shutil.rmtree(aside, ignore_errors=True)
        dest.rename(aside)
        if not keep_previous:
            shutil.rmtree(aside)
    tmp.rename(dest)


def pack(run: Path, dest: Path, max_mib: float, keep_grids: int) -> str:
    for need in (run / "state" / "state.safetensors", run / "model.safetensors"):
        if not need.is_file():
            raise SystemExit(f"{run}: no training state to pack (no {need.relative_to(run)})")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".new.", dir=dest.parent))
    tmp.chmod(0o755)
    try:
        rest, archive = tmp / "state.rest.safetensors", tmp / "run.tar.gz"
        state, header = read(run / "state" / "state.safetensors")
        model, _ = read(run / "model.safetensors")
        for rounded in (False, True):
            counts = shrink(state, header, model, rest, rounded)
            with tarfile.open(archive, "w:gz", compresslevel=6) as tar:
                tar.add(run / "model.safetensors", "model.safetensors")
                tar.add(rest, "state/state.rest.safetensors")
                for rel in run_files(run, keep_grids):
                    tar.add(run / rel, rel)
            size = archive.stat().st_size
            if size <= max_mib * 2**20:
                break
            if rounded:
                raise SystemExit(f"{run}: packed, the run takes {size / 2**20:.1f} MiB even with its moments and "
                                 f"pool in bf16, over the {max_mib:g} MiB a call can return")
        rest.unlink()
        with open(archive, "rb") as f:
            for i, chunk in enumerate(iter(lambda: f.read(PART_BYTES), b"")):
                (tmp / f"run.tar.gz.part{i:02d}").write_bytes(chunk)
        archive.unlink()
        replace_dir(tmp, dest, keep_previous=False)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    how = (f"moments and pool in bf16 ({counts['rounded']} tensors: resume from it is not bit-exact)"
           if counts["rounded"] else "exact")
    return (f"{run} (state at {state_samples(header)} samples) packed into {dest}/: {size / 2**20:.1f} MiB in "
            f"{i + 1} parts, {how}")


class _Parts(io.RawIOBase):
    """The parts of an archive read as one stream."""

    def __init__(self, paths: list[Path]):
        self.files = [open(p, "rb") for p in paths]

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while self.files:
            n = self.files[0].readinto(b)
            if n:
                return n
            self.files.pop(0).close()
        return 0


def unpack(src: Path, run: Path) -> str:
    parts = sorted(src.glob("run.tar.gz.part*"))
    if not parts:
        raise SystemExit(f"{src}: no run.tar.gz.part* files (did the run save?)")
    run.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=run.name + ".new.", dir=run.parent))
    tmp.chmod(0o755)
    try:
        with tarfile.open(fileobj=io.BufferedReader(_Parts(parts)), mode="r|gz") as tar:
            tar.extractall(tmp, filter="data")
        rest = tmp / "state" / "state.rest.safetensors"
        counts = restore(rest, tmp / "model.safetensors", tmp / "state" / "state.safetensors")
        rest.unlink()
        (tmp / "state" / "state.safetensors").chmod(0o644)
        replace_dir(tmp, run, keep_previous=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    how = f", {counts['rounded']} tensors rounded to bf16 when packed" if counts["rounded"] else ""
    return f"unpacked {src} into {run} (state at {state_samples(counts['header'])} samples{how})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="verb", required=True)
    p = sub.add_parser("pack")
    p.add_argument("run", type=Path), p.add_argument("dest", type=Path)
    # 54 MiB leaves 10 of a call's 64 for the rest of the working tree (5 MiB now) and, on the way back,
    # for the script's log and benchmarks.
    p.add_argument("--max-mib", type=float, default=54)
    p.add_argument("--keep-grids", type=int, default=4)
    u = sub.add_parser("unpack")
    u.add_argument("src", type=Path), u.add_argument("run", type=Path)
    args = ap.parse_args()
    print(pack(args.run, args.dest, args.max_mib, args.keep_grids) if args.verb == "pack"
          else unpack(args.src, args.run))


if __name__ == "__main__":
    main()
