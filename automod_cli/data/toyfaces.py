"""toyfaces: procedural cartoon faces whose factors of variation live at known scales.

Every face is a pure function of one row of factors (``render_face(row, size)``); a row is a pure
function of ``(seed, index)`` (``sample_rows``). The factors are grouped by the scale they are
meant to live at, and each column of ``labels.csv`` carries its group as a prefix:

- ``coarse_``  layout: position, head size, tilt, head shape (squareness, aspect, chin).
- ``middle_``  features: eyes (size, shape, spacing), mouth (``middle_smile`` 0/1, width,
  strength), ``middle_glasses`` 0/1 and frame shape, hair style, brows.
- ``fine_``    appearance: skin, hair and background colours, texture pattern and strength.

Rows are canonicalised through their CSV text before rendering, so re-rendering a row read back from
``labels.csv`` gives exactly the pixels of the original render. A "true mix" of two faces is the
render of ``mix_rows(a, b, ("coarse",))``: B's layout, A's features and appearance.

Faces are drawn with Pillow at 4x the output size and downsampled with Lanczos (anti-aliased).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np
from PIL import Image, ImageDraw

from ..errors import InputError, UserError
from ..io.atomic import atomic_path, write_text_atomic

GROUPS = ("coarse", "middle", "fine")
GROUP_NOTES = {"coarse": "layout: position, size, tilt, head shape",
               "middle": "features: eyes, mouth, glasses, hair style, brows",
               "fine": "colours and texture"}  # what each group's factors are (labels of the demo's figures)
LABELS_NAME = "labels.csv"
INFO_NAME = "toyfaces.json"
FORMAT_VERSION = 1
SUPERSAMPLE = 4
MIN_SIZE, MAX_SIZE = 8, 1024


@dataclass(frozen=True)
class Factor:
    """One column of labels.csv: ``kind`` is "float" (4 decimals in the CSV) or "int" (inclusive)."""

    name: str
    kind: str
    low: float
    high: float

    @property
    def group(self) -> str:
        return self.name.split("_", 1)[0]


FACTORS: tuple[Factor, ...] = (
    # layout
    Factor("coarse_x", "float", -0.12, 0.12),        # head centre offset, fraction of the image width
    Factor("coarse_y", "float", -0.08, 0.10),        # ... of the image height (down is positive)
    Factor("coarse_size", "float", 0.22, 0.32),      # head half-width, fraction of the image size
    Factor("coarse_tilt", "float", -25.0, 25.0),     # degrees, clockwise
    Factor("coarse_aspect", "float", 1.0, 1.35),     # head height / width
    Factor("coarse_square", "float", 0.0, 1.0),      # 0 round ... 1 squarish
    Factor("coarse_chin", "float", 0.0, 1.0),        # how much the lower face narrows
    # features
    Factor("middle_eye_size", "float", 0.12, 0.21),  # radius, in head half-widths
    Factor("middle_eye_shape", "float", 0.45, 1.0),  # height / width of the eye
    Factor("middle_eye_gap", "float", 0.32, 0.46),   # eye centre distance from the midline
    Factor("middle_smile", "int", 0, 1),             # 1: open smiling mouth, 0: straight or frowning
    Factor("middle_mouth_strength", "float", 0.0, 1.0),
    Factor("middle_mouth_width", "float", 0.26, 0.5),
    Factor("middle_glasses", "int", 0, 1),
    Factor("middle_glasses_round", "int", 0, 1),     # round or square frames (when glasses are on)
    Factor("middle_hair_style", "int", 0, 4),        # 0 bald, 1 short, 2 long, 3 curly, 4 spiky
    Factor("middle_brow_tilt", "float", -0.6, 0.6),  # brow slant (positive: inner ends lower)
    # appearance
    Factor("fine_skin_r", "int", 0, 255),
    Factor("fine_skin_g", "int", 0, 255),
    Factor("fine_skin_b", "int", 0, 255),
    Factor("fine_hair_r", "int", 0, 255),
    Factor("fine_hair_g", "int", 0, 255),
    Factor("fine_hair_b", "int", 0, 255),
    Factor("fine_bg_r", "int", 0, 255),
    Factor("fine_bg_g", "int", 0, 255),
    Factor("fine_bg_b", "int", 0, 255),
    Factor("fine_texture_seed", "int", 0, 2**31 - 1),
    Factor("fine_texture_amount", "float", 0.0, 1.0),
)
FACTOR_BY_NAME = {f.name: f for f in FACTORS}
COLUMNS: tuple[str, ...] = ("file",) + tuple(f.name for f in FACTORS)

HAIR_STYLES = ("bald", "short", "long", "curly", "spiky")
_SKIN_TONES = np.array([(255, 226, 200), (241, 194, 160), (224, 170, 125), (198, 134, 90),
                        (150, 95, 60), (96, 60, 40)], dtype=np.float64)
_HAIR_COLOURS = np.array([(25, 20, 20), (70, 45, 30), (125, 82, 45), (215, 185, 105), (170, 70, 30),
                          (165, 165, 160), (235, 235, 225)], dtype=np.float64)


def columns_of(group: str) -> tuple[str, ...]:
    """The factor columns of one scale group ("coarse", "middle" or "fine")."""
    if group not in GROUPS:
        raise UserError(f"unknown scale group '{group}' (use one of {', '.join(GROUPS)})")
    return tuple(f.name for f in FACTORS if f.group == group)


def file_name(index: int) -> str:
    return f"{index:06d}.png"


# ----------------------------------------------------------------------------------------------
# Rows: sampling, canonical text form, mixing


def _format_value(factor: Factor, value) -> str:
    if factor.kind == "int":
        return str(int(value))
    return f"{float(value):.4f}"


def _parse_value(factor: Factor, text: str, where: str) -> float | int:
    try:
        value: float | int = int(text) if factor.kind == "int" else float(text)
    except ValueError:
        kind = "an integer" if factor.kind == "int" else "a number"
        raise InputError(f"{where}, column {factor.name}: '{text}' is not {kind}") from None
    if not (factor.low <= value <= factor.high):  # also rejects nan
        raise InputError(f"{where}, column {factor.name}: {text} is outside [{factor.low:g}, {factor.high:g}]")
    return value


def canonical_row(row: dict) -> dict:
    """The row as it reads back from labels.csv (floats rounded to 4 decimals, ints as int)."""
    out = {"file": str(row["file"])}
    for f in FACTORS:
        out[f.name] = _parse_value(f, _format_value(f, row[f.name]), f"row {out['file']}")
    return out


def sample_row(seed: int, index: int) -> dict:
    """The factors of face ``index`` of the data set drawn with ``seed`` (independent of n)."""
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, int(index)])
    u = rng.uniform
    row: dict = {"file": file_name(index)}
    for f in FACTORS:
        if f.kind == "float":
            row[f.name] = u(f.low, f.high)
    row["middle_smile"] = int(rng.random() < 0.5)
    row["middle_glasses"] = int(rng.random() < 0.35)
    row["middle_glasses_round"] = int(rng.random() < 0.5)
    row["middle_hair_style"] = int(rng.choice(5, p=[0.12, 0.3, 0.25, 0.18, 0.15]))

    skin = _interp_palette(_SKIN_TONES, rng.random()) + rng.normal(0, 6, 3)
    hair = _HAIR_COLOURS[rng.integers(len(_HAIR_COLOURS))] + rng.normal(0, 12, 3)
    if rng.random() < 0.12:  # dyed: any colour
        hair = _hsv_to_rgb(rng.random(), rng.uniform(0.5, 0.9), rng.uniform(0.4, 0.9))
    bg = _hsv_to_rgb(rng.random(), rng.uniform(0.1, 0.65), rng.uniform(0.35, 0.97))
    for name, rgb in (("skin", skin), ("hair", hair), ("bg", bg)):
        for ch, v in zip("rgb", rgb):
            row[f"fine_{name}_{ch}"] = int(np.clip(round(float(v)), 0, 255))
    row["fine_texture_seed"] = int(rng.integers(0, 2**31 - 1))
    return canonical_row(row)


def sample_rows(n: int, seed: int, start: int = 0) -> list[dict]:
    """Rows ``start .. start+n-1`` of the data set drawn with ``seed``."""
    return [sample_row(seed, i) for i in range(start, start + n)]


def mix_rows(a: dict, b: dict, groups: Iterable[str] = ("coarse",)) -> dict:
    """A's row with the factor columns of ``groups`` taken from B (keeps A's file name)."""
    taken = {c for g in groups for c in columns_of(g)}
    return {k: (b[k] if k in taken else v) for k, v in a.items()}


def _interp_palette(palette: np.ndarray, t: float) -> np.ndarray:
    x = t * (len(palette) - 1)
    i = min(int(x), len(palette) - 2)
    return palette[i] + (x - i) * (palette[i + 1] - palette[i])


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    import colorsys

    return np.array(colorsys.hsv_to_rgb(h, s, v)) * 255.0


# ----------------------------------------------------------------------------------------------
# Rendering


class _Frame:
    """Face-local coordinates -> supersampled pixels: u across the face, v down, in head half-widths."""

    def __init__(self, row: dict, canvas: int):
        self.cx = canvas * (0.5 + row["coarse_x"])
        self.cy = canvas * (0.5 + row["coarse_y"])
        self.r = canvas * row["coarse_size"]
        t = math.radians(row["coarse_tilt"])
        self.cos, self.sin = math.cos(t), math.sin(t)

    def pt(self, u: float, v: float) -> tuple[float, float]:
        return (self.cx + self.r * (u * self.cos - v * self.sin), self.cy + self.r * (u * self.sin + v * self.cos))

    def pts(self, uv: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
        return [self.pt(u, v) for u, v in uv]

    def px(self, length: float) -> int:
        return max(1, int(round(length * self.r)))


def _ellipse(cu, cv, ru, rv, n=48, power=2.0, start=0.0, stop=2 * math.pi):
    """Points on a superellipse (power 2: ellipse) centred at (cu, cv)."""
    out = []
    for k in range(n):
        a = start + (stop - start) * k / (n if stop - start >= 2 * math.pi else n - 1)
        c, s = math.cos(a), math.sin(a)
        out.append((cu + ru * math.copysign(abs(c) ** (2 / power), c), cv + rv * math.copysign(abs(s) ** (2 / power), s)))
    return out


def _head_outline(row: dict, scale: float = 1.0, n: int = 96) -> list[tuple[float, float]]:
    aspect = row["coarse_aspect"]
    power = 2.0 + 2.5 * row["coarse_square"]
    chin = row["coarse_chin"]
    out = []
    for u, v in _ellipse(0.0, 0.0, 1.0, aspect, n=n, power=power):
        if v > 0:  # narrow the lower face towards the chin
            u *= 1.0 - 0.35 * chin * (v / aspect) ** 1.5
        out.append((u * scale, v * scale))
    return out


def _rgb(row: dict, name: str, factor: float = 1.0) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, round(row[f"fine_{name}_{c}"] * factor)))) for c in "rgb")  # type: ignore


def _hair_cap(row: dict) -> list[tuple[float, float]]:
    """Hair on top of the head: the upper head outline, slightly enlarged, closed by a fringe."""
    aspect = row["coarse_aspect"]
    outer = [(u, v) for u, v in _head_outline(row, 1.07, n=128) if v < -0.28 * aspect]
    outer.sort(key=lambda p: p[0])
    fringe = []
    for k in range(13):
        u = 0.92 - 1.84 * k / 12
        fringe.append((u, -0.42 * aspect + 0.05 * math.sin(k * 1.9) + 0.1 * (1 - u * u) ** 0.5 * (k % 2)))
    return outer + fringe


def render_face(row: dict, size: int) -> Image.Image:
    """Draw one face (an RGB ``size``x``size`` image) from a row of factors."""
    canvas = size * SUPERSAMPLE
    f = _Frame(row, canvas)
    aspect = row["coarse_aspect"]
    skin, skin_dark = _rgb(row, "skin"), _rgb(row, "skin", 0.82)
    hair, hair_dark = _rgb(row, "hair"), _rgb(row, "hair", 0.75)
    style = HAIR_STYLES[row["middle_hair_style"]]
    ink = (28, 24, 26)

    im = Image.new("RGB", (canvas, canvas), _rgb(row, "bg"))
    d = ImageDraw.Draw(im)

    # Behind the head: long hair and curly volume.
    if style == "long":
        back = _ellipse(0.0, -0.1 * aspect, 1.28, 1.05 * aspect, n=48, start=math.pi, stop=2 * math.pi)
        back += [(1.3, 1.7 * aspect), (-1.3, 1.7 * aspect)]
        d.polygon(f.pts(back), fill=hair)
    elif style == "curly":
        bumps = []
        for k in range(72):
            a = 2 * math.pi * k / 72
            rr = 1.3 + 0.09 * math.cos(11 * a)
            bumps.append((rr * math.cos(a), -0.25 * aspect + rr * 0.95 * aspect * math.sin(a)))
        d.polygon(f.pts(bumps), fill=hair)

    # Neck and ears.
    d.polygon(f.pts([(-0.38, 0.5 * aspect), (0.38, 0.5 * aspect), (0.42, 2.6), (-0.42, 2.6)]), fill=skin_dark)
    for side in (-1, 1):
        d.polygon(f.pts(_ellipse(side * 0.97, 0.02 * aspect, 0.17, 0.26, n=24)), fill=skin_dark)
    d.polygon(f.pts(_head_outline(row)), fill=skin)

    # Hair on top.
    if style in ("short", "long", "curly"):
        d.polygon(f.pts(_hair_cap(row)), fill=hair)
    elif style == "spiky":
        cap = _hair_cap(row)
        d.polygon(f.pts(cap), fill=hair)
        for k in range(7):
            a = math.pi + math.pi * (k + 0.5) / 7
            bu, bv = math.cos(a), aspect * math.sin(a)
            half = 0.16
            tip = (1.45 * bu, 1.4 * bv - 0.05)
            side = (-math.sin(a) * half, math.cos(a) * half)
            d.polygon(f.pts([(0.95 * bu + side[0], 0.95 * bv + side[1]), tip,
                             (0.95 * bu - side[0], 0.95 * bv - side[1])]), fill=hair)

    # Eyes and brows.
    e, gap = row["middle_eye_size"], row["middle_eye_gap"]
    ev = -0.12 * aspect
    eh = e * row["middle_eye_shape"]
    brow_colour = hair_dark if style != "bald" else _rgb(row, "skin", 0.55)
    for side in (-1, 1):
        cu = side * gap
        d.polygon(f.pts(_ellipse(cu, ev, e, eh, n=32)), fill=(250, 250, 250))
        pr = min(e, eh) * 0.62
        d.polygon(f.pts(_ellipse(cu + side * 0.01, ev + 0.15 * eh, pr, pr, n=24)), fill=ink)
        bv = ev - eh - 0.1 - (0.04 if row["middle_glasses"] else 0.0)
        tilt = row["middle_brow_tilt"] * 0.12
        d.line(f.pts([(cu - side * e * 1.05, bv + tilt), (cu + side * e * 1.05, bv - tilt)]),
               fill=brow_colour, width=f.px(0.07))

    # Glasses: two frames, a bridge and the arms to the ears.
    if row["middle_glasses"]:
        gr = e * 1.2 + 0.07
        power = 2.0 if row["middle_glasses_round"] else 5.0
        w = f.px(0.065)
        for side in (-1, 1):
            cu = side * gap
            frame = f.pts(_ellipse(cu, ev, gr, gr * 0.85, n=40, power=power))
            d.line(frame + frame[:1], fill=ink, width=w, joint="curve")
            d.line(f.pts([(side * (gap + gr), ev - 0.05), (side * 0.99, ev - 0.1)]), fill=ink, width=w)
        d.line(f.pts([(-(gap - gr), ev - 0.02), (0.0, ev - 0.06), (gap - gr, ev - 0.02)]), fill=ink, width=w)

    # Nose.
    d.polygon(f.pts([(0.0, 0.08 * aspect), (0.09, 0.3 * aspect), (-0.04, 0.32 * aspect)]), fill=skin_dark)

    # Mouth: an open crescent when smiling, a bent line otherwise.
    mw, strength = row["middle_mouth_width"], row["middle_mouth_strength"]
    mv = 0.5 * aspect
    xs = [-1 + 2 * k / 20 for k in range(21)]
    if row["middle_smile"]:
        depth = 0.15 + 0.17 * strength
        lower = [(mw * x, mv - 0.05 + depth * (1 - x * x)) for x in xs]
        upper = [(mw * x, mv - 0.05 + 0.22 * depth * (1 - x * x)) for x in reversed(xs)]
        d.polygon(f.pts(lower + upper), fill=(120, 25, 35))
        teeth = [(mw * 0.8 * x, mv - 0.05 + 0.22 * depth * (1 - x * x) + 0.04) for x in xs[2:-2]]
        d.line(f.pts(teeth), fill=(245, 245, 240), width=f.px(0.05))
    else:
        bend = -0.12 * strength  # 0: straight, 1: a clear frown
        line = [(0.85 * mw * x, mv + bend * (1 - x * x)) for x in xs]
        d.line(f.pts(line), fill=(120, 35, 40), width=f.px(0.075), joint="curve")

    im = im.resize((size, size), Image.LANCZOS)
    return _apply_texture(im, row)


def _apply_texture(im: Image.Image, row: dict) -> Image.Image:
    """Add the row's texture: smooth blotches plus grain, seeded by ``fine_texture_seed``."""
    amount = row["fine_texture_amount"]
    if amount <= 0:
        return im
    size = im.size[0]
    rng = np.random.default_rng(row["fine_texture_seed"])
    coarse = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
    blotch = Image.fromarray(coarse, "F").resize((size, size), Image.BICUBIC)
    grain = rng.normal(0.0, 1.0, (size, size)).astype(np.float32)
    pattern = (np.asarray(blotch, dtype=np.float32) * 0.7 + grain * 0.5) * (14.0 * amount)
    a = np.asarray(im, dtype=np.float32) + pattern[:, :, None]
    return Image.fromarray(np.clip(np.floor(a + 0.5), 0, 255).astype(np.uint8), "RGB")


def render_array(rows: Sequence[dict], size: int) -> np.ndarray:
    """Render rows in memory: uint8 [N, size, size, 3]."""
    out = np.empty((len(rows), size, size, 3), dtype=np.uint8)
    for k, row in enumerate(rows):
        out[k] = np.asarray(render_face(row, size))
    return out


def render_tensor(rows: Sequence[dict], size: int):
    """Render rows in memory as a float32 torch tensor [N, 3, size, size] in [-1, 1]."""
    import torch

    a = torch.from_numpy(render_array(rows, size)).permute(0, 3, 1, 2).float()
    return a / 127.5 - 1.0


# ----------------------------------------------------------------------------------------------
# labels.csv


def labels_text(rows: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for row in rows:
        w.writerow([row["file"]] + [_format_value(f, row[f.name]) for f in FACTORS])
    return buf.getvalue()


def read_labels(path: str | Path) -> list[dict]:
    """Read and validate a labels file; extra columns are ignored, missing ones are an error."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "not a file", path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read labels ({e})", path) from None
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise InputError(f"not a toyfaces labels file: missing column(s) {', '.join(missing)}", path)
    rows, seen = [], set()
    for line_no, raw in enumerate(reader, start=2):
        where = f"line {line_no}"
        name = (raw.get("file") or "").strip()
        if not name or "/" in name or "\\" in name or name.startswith(".") or not name.lower().endswith(".png"):
            raise InputError(f"{where}: file name '{name}' must be a plain name ending in .png", path)
        if name in seen:
            raise InputError(f"{where}: file name '{name}' appears twice", path)
        seen.add(name)
        row: dict = {"file": name}
        for f in FACTORS:
            value = raw.get(f.name)
            if value is None:
                raise InputError(f"{where}: too few fields", path)
            try:
                row[f.name] = _parse_value(f, value.strip(), where)
            except InputError as e:
                raise InputError(str(e), path) from None
        rows.append(row)
    if not rows:
        raise InputError("labels file has no rows", path)
    return rows


def read_info(folder: str | Path) -> dict | None:
    """The ``toyfaces.json`` written beside labels.csv (size, seed, n), or None."""
    p = Path(folder) / INFO_NAME
    if not p.is_file():
        return None
    try:
        info = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"unreadable ({e})", p) from None
    if not isinstance(info, dict) or info.get("format") != "toyfaces":
        raise InputError("not a toyfaces info file", p)
    return info


# ----------------------------------------------------------------------------------------------
# Writing a data set


def check_size(size: int) -> None:
    if not (MIN_SIZE <= size <= MAX_SIZE):
        raise UserError(f"--size must be between {MIN_SIZE} and {MAX_SIZE} pixels, got {size}")


def _render_chunk(job: tuple[Path, list[dict], int, bool]) -> int:
    out_dir, rows, size, overwrite = job
    for row in rows:
        with atomic_path(out_dir / row["file"], overwrite=overwrite) as tmp:
            render_face(row, size).save(tmp, format="PNG", compress_level=1)
    return len(rows)


def _existing_outputs(out_dir: Path, rows: Sequence[dict]) -> list[Path]:
    names = [LABELS_NAME, INFO_NAME] + [r["file"] for r in rows]
    return [out_dir / n for n in names if (out_dir / n).exists()]


def write_dataset(out_dir: str | Path, rows: Sequence[dict], size: int, *, info: dict | None = None,
                  overwrite: bool = False, workers: int | None = None,
                  progress: Callable[[int], None] | None = None) -> Path:
    """Render ``rows`` into ``out_dir`` (one PNG per row), then write labels.csv and toyfaces.json.

    Every file is written atomically; existing outputs are an error unless ``overwrite``.
    ``progress(k)`` is called with the number of images finished since its last call.
    Returns the path of labels.csv.
    """
    check_size(size)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError("exists and is not a folder", out_dir)
    if not overwrite:
        existing = _existing_outputs(out_dir, rows)
        if existing:
            raise UserError(f"exists already ({len(existing)} output file(s) there; use --overwrite to replace them)",
                            existing[0])
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = [canonical_row(r) for r in rows]
    previous = _listed_files(out_dir / LABELS_NAME) if overwrite else set()
    workers = max(1, min(workers or (os.cpu_count() or 1), 32))
    chunk = max(16, min(256, len(rows) // (workers * 4) + 1))
    jobs = [(out_dir, list(rows[i:i + chunk]), size, overwrite) for i in range(0, len(rows), chunk)]
    if workers == 1 or len(jobs) == 1:
        for job in jobs:
            done = _render_chunk(job)
            if progress:
                progress(done)
    else:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            for done in pool.map(_render_chunk, jobs):
                if progress:
                    progress(done)
    info = dict(info or {})
    info.update({"format": "toyfaces", "version": FORMAT_VERSION, "size": size, "n": len(rows)})
    write_text_atomic(out_dir / INFO_NAME, json.dumps(info, indent=2) + "\n", overwrite=overwrite)
    labels = out_dir / LABELS_NAME
    write_text_atomic(labels, labels_text(rows), overwrite=overwrite)
    # Images of the replaced data set that the new one does not have would otherwise be read as
    # training data; remove them (only files the old labels.csv listed).
    for name in sorted(previous - {r["file"] for r in rows}):
        (out_dir / name).unlink(missing_ok=True)
    return labels


def _listed_files(labels: Path) -> set[str]:
    """The plain .png names listed in an existing labels.csv (empty when there is none)."""
    try:
        with open(labels, newline="", encoding="utf-8-sig") as f:
            names = {(r.get("file") or "") for r in csv.DictReader(f)}
    except (OSError, UnicodeDecodeError, csv.Error):
        return set()
    return {n for n in names if n.endswith(".png") and "/" not in n and "\\" not in n and not n.startswith(".")}


def generate(out_dir: str | Path, n: int, size: int = 64, seed: int = 0, **kw) -> Path:
    """Draw ``n`` faces with ``seed`` into ``out_dir``; keyword arguments go to ``write_dataset``."""
    if n < 1:
        raise UserError(f"--n must be at least 1, got {n}")
    check_size(size)
    return write_dataset(out_dir, sample_rows(n, seed), size, info={"seed": seed}, **kw)


def rerender(labels_path: str | Path, out_dir: str | Path, size: int | None = None, **kw) -> Path:
    """Render the rows of a (possibly edited) labels file; the size defaults to the one recorded
    in ``toyfaces.json`` beside it."""
    labels_path = Path(labels_path)
    rows = read_labels(labels_path)
    if size is None:
        info = read_info(labels_path.parent)
        if info is None or not isinstance(info.get("size"), int):
            raise UserError(f"no {INFO_NAME} beside the labels file to say the image size; pass --size",
                            labels_path)
        size = info["size"]
    return write_dataset(out_dir, rows, size, info={"from_labels": str(labels_path)}, **kw)
