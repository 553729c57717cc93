"""One JSON object per metric result, appended as a line to a results log.

A record names the metric and its variant (``fid50k``, ``ppl_zfull_crop``...), N, the value, the model
file and its hash, the data (set hash or reference-statistics hash), the network weights and their
hashes (with whether each is the published file), seed, device, precision, wall time and protocol.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
from pathlib import Path

from ..io.atomic import atomic_path
from .weights import WeightsFile, sha256_file

RESULTS_ENV = "AUTOMOD_RESULTS"
DEFAULT_RESULTS_FILE = "automod-results.jsonl"


def default_results_path() -> Path:
    return Path(os.environ.get(RESULTS_ENV) or DEFAULT_RESULTS_FILE)


def count_label(n: int) -> str:
    """50000 -> '50k', 1234 -> '1234' (the way papers name FID-50k)."""
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else str(n)


def file_record(path: str | Path | None) -> dict | None:
    if path is None:
        return None
    path = Path(path)
    return {"path": str(path), "sha256": sha256_file(path) if path.is_file() else None}


def make_record(metric: str, variant: str, value: float, n: int, *, weights: list[WeightsFile],
                wall_s: float, device: str, precision: str, seed: int | None = None,
                model: str | Path | None = None, data: dict | None = None, extra: dict | None = None) -> dict:
    """Build the record; ``data`` describes what was compared (paths, hashes, counts)."""
    record = {
        "metric": metric,
        "variant": variant,
        "value": value,
        "n": n,
        "model": file_record(model),
        "data": data or {},
        "weights": [w.record() for w in weights],
        "all_weights_published": all(w.published for w in weights),
        "seed": seed,
        "device": device,
        "precision": precision,
        "wall_s": round(wall_s, 3),
        "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
    }
    if extra:
        record.update(extra)
    return record


def to_json_line(record: dict) -> str:
    return json.dumps(record, sort_keys=False, allow_nan=False, default=str)


def append_record(record: dict, path: str | Path | None = None) -> Path:
    """Append one line to the results log, rewriting it atomically (never half-written)."""
    path = Path(path) if path is not None else default_results_path()
    line = to_json_line(record) + "\n"
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    if old and not old.endswith("\n"):
        old += "\n"
    with atomic_path(path, overwrite=True) as tmp:
        tmp.write_text(old + line, encoding="utf-8")
    return path
