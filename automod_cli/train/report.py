"""What the trainer tells its user: the data it found, which preset fits it, the phase table, warnings
about the schedule, the preset's departures from the paper, the start-up summary and the progress line
of each phase. Pure functions of the configuration (and a look at the data), plus ``ProgressReporter``.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from typing import Callable

from ..errors import UserError
from .schedule import (COMMON, CPU_PRESETS, DEMO_PRESETS, PAPER_PRESETS, PER_PHASE_KEYS, PRESETS, n_phases,
                       resolve_config)

# Settings that say where, how fast and how often a run works, not what it trains: never a departure.
NOT_THE_GAME = {"duration", "checkpoint_every", "checkpoint_minutes", "log_every", "grid_every", "workers",
                "device", "threads", "precision", "cuda_graphs", "compile", "seed", "split", "test_fraction", "init",
                "metrics", "metrics_every", "metrics_n", "preset", "resolution"}
SCHEDULE_KEYS = {"phase_starts", "lr", "margin", "batch", "fade"}


# ----------------------------------------------------------------------------------------------
# Numbers as people read them


def count(n: int | float, digits: int | None = None) -> str:
    """2_400_000 -> '2.4M', 20_040_000 -> '20.04M', 8000 -> '8k', 500 -> '500'; with ``digits``, rounded to
    that many significant digits (327_904 -> '328k' with 3)."""
    n = int(n)
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if abs(n) >= size:
            if digits:
                return f"{n / size:.{digits}g}" + unit
            return f"{n / size:.3f}".rstrip("0").rstrip(".") + unit
    return str(n)


def duration_text(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s >= 86400:
        return f"{s // 86400}d {s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    if s >= 60:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s}s"


def width_text(w: float) -> str:
    """0.0625 -> '1/16' (the width multipliers people pick), else the number."""
    if 0 < w < 1 and abs(1 / w - round(1 / w)) < 1e-9:
        return f"1/{round(1 / w)}"
    return f"{w:g}"


def _value(v) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    return f"{v:g}" if isinstance(v, float) else str(v)


# ----------------------------------------------------------------------------------------------
# The data


@dataclass
class DataInfo:
    path: str
    kind: str                 # folder, zip or lmdb
    count: int
    resolution: int | None    # the side of the probed images when they agree (the shorter side if not square)
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) of the probed images

    def describe(self) -> str:
        if self.resolution is not None:
            shape = f"{self.resolution}²" + ("" if all(w == h for w, h in self.sizes) else " (centre-cropped)")
        else:
            shape = "mixed sizes (" + ", ".join(f"{w}×{h}" for w, h in sorted(set(self.sizes))[:3]) + ")"
        return f"{self.count:,} images ({self.kind} {self.path}), {shape} by its first {len(self.sizes)} files"


def probe_dataset(ds, probe: int = 8) -> DataInfo:
    """Count the images of a training data set and look at the size of its first ``probe`` readable ones."""
    from ..data.datasets import decode_image

    sizes = []
    for name in ds.names:
        if len(sizes) >= probe:
            break
        try:
            sizes.append(decode_image(ds.source.read(name), name).size)
        except (OSError, KeyError, UserError):
            continue
    sides = {min(w, h) for w, h in sizes}
    return DataInfo(str(ds.root), ds.source.kind, len(ds), sides.pop() if len(sides) == 1 else None, sizes)


def probe_data(path) -> DataInfo:
    from ..data.datasets import ImageFolderDataset

    return probe_dataset(ImageFolderDataset(path, resolution=4, mirror=False))


def preset_list() -> str:
    return ", ".join(f"{name} ({PRESETS[name]['resolution']}²{', CPU' if name in CPU_PRESETS else ''})"
                     for name in PRESETS if name not in DEMO_PRESETS)


def choose_preset(info: DataInfo) -> tuple[str, str]:
    """The preset for data of this resolution when exactly one fits, and why; else a one-line error with
    the list (several paper presets are 256²: which data set it is, only the user knows)."""
    fits = [name for name in PRESETS if PRESETS[name]["resolution"] == info.resolution and name not in DEMO_PRESETS]
    if len(fits) == 1:
        name = fits[0]
        what = "a CPU-sized preset" if name in CPU_PRESETS else "the reference's schedule for it"
        return name, (f"no --preset given: the data is {info.resolution}² and {name} is the one preset at "
                      f"{info.resolution}² ({what}); give --preset to choose another")
    seen = f"{info.resolution}² images" if info.resolution is not None else "images of mixed sizes"
    why = (f"{len(fits)} presets train {info.resolution}² ({', '.join(fits)})" if fits
           else f"no preset trains {seen}")
    raise UserError(f"no --preset given and the data ({info.describe()}) does not pick one: {why}; "
                    f"choose with --preset: {preset_list()} (and --resolution to cut a schedule)")


# ----------------------------------------------------------------------------------------------
# The schedule


def phase_rows(cfg: dict) -> list[dict]:
    n, starts, duration = len(cfg["phase_starts"]), cfg["phase_starts"], cfg["duration"]
    rows = []
    for p in range(n):
        end = starts[p + 1] if p + 1 < n else duration
        rows.append({"phase": p, "resolution": 4 * 2 ** p, "start": starts[p],
                     "samples": max(0, min(end, duration) - starts[p]), "batch": cfg["batch"][p],
                     "lr": cfg["lr"][p], "margin": cfg["margin"][p], "reached": starts[p] < duration})
    return rows


def phase_table(cfg: dict) -> list[str]:
    lines = [f"  {'phase':>5} {'res':>6} {'start':>8} {'samples':>8} {'batch':>5} {'lr':>7} {'margin':>6}"]
    for r in phase_rows(cfg):
        lines.append(f"  {r['phase']:>5} {str(r['resolution']) + '²':>6} {count(r['start']):>8} "
                     f"{count(r['samples']) if r['reached'] else '—':>8} {r['batch']:>5} {r['lr']:>7g} "
                     f"{r['margin']:>6g}" + ("" if r["reached"] else "  (not reached)"))
    fade = "from 4²" if cfg.get("fade_first_phase") else "from 8²"
    lines.append(f"  fade-in: the first {count(cfg['fade'])} samples of each phase ({fade}); "
                 f"run: {count(cfg['duration'])} samples")
    return lines


def duration_warning(cfg: dict) -> str | None:
    """A warning when the run ends before its top phase has faded in."""
    starts, duration, fade = cfg["phase_starts"], cfg["duration"], cfg["fade"]
    top, res = starts[-1], cfg["resolution"]
    if cfg.get("init"):
        return None  # a fine-tuning run starts at the top phase
    if duration <= top:
        reached = 4 * 2 ** max(p for p, s in enumerate(starts) if s < duration)
        return (f"warning: the run ends at {count(duration)} samples, before its top phase ({res}²) starts at "
                f"{count(top)}: the model will be {reached}²; give --duration above {count(top + fade)} to "
                f"train {res}² (faded in), or --resolution {reached} to say so")
    if len(starts) > 1 and duration < top + fade:
        return (f"warning: the run ends at {count(duration)} samples, while the top phase ({res}²) is still fading "
                f"in (α = {(duration - top) / fade:.2f}); give --duration above {count(top + fade)}")
    return None


# ----------------------------------------------------------------------------------------------
# Departures from the paper


def resolved_precision(cfg: dict, device_type: str) -> str:
    """"bf16" (autocast) or "fp32": what precision "auto" means on this device (bf16 on CUDA only)."""
    p = cfg.get("precision", "fp32")
    if p == "auto":
        return "bf16" if device_type == "cuda" else "fp32"
    return p


def effective_precision(cfg: dict, device_type: str) -> str:
    if resolved_precision(cfg, device_type) == "bf16":
        return "bf16 autocast"
    return "fp32 (TF32 convolutions, PyTorch's default)" if device_type == "cuda" else "fp32"


def departures(cfg: dict, device_type: str = "cpu") -> tuple[str, list[str]]:
    """(what the preset is, the ways this configuration departs from the paper's run or game)."""
    preset = cfg.get("preset")
    out = []
    if preset in PAPER_PRESETS:
        paper = resolve_config(preset)
        what = f"{preset}: the reference's {preset} run"
        if cfg["resolution"] != paper["resolution"]:
            out.append(f"resolution {cfg['resolution']}² (paper {paper['resolution']}²)")
        n = n_phases(cfg["resolution"])
        for key in sorted(k for k in paper if k not in NOT_THE_GAME):
            ref = paper[key][:n] if key in PER_PHASE_KEYS else paper[key]
            if cfg.get(key) != ref:
                show = width_text if key == "width" else _value
                out.append(f"{key} {show(cfg.get(key))} (paper {show(ref)})")
        if cfg["duration"] != paper["duration"]:
            out.append(f"duration {count(cfg['duration'])} (the released model: {count(paper['duration'])})")
    else:
        what = (f"{preset}: a CPU-sized preset, not a paper run" if preset in CPU_PRESETS + DEMO_PRESETS
                else f"{preset}")
        out.append(f"a short schedule ({count(cfg['duration'])} samples, fades of {count(cfg['fade'])}, batch "
                   f"{_value(cfg['batch'])}, lr {_value(cfg['lr'])})")
        for key in sorted(k for k in COMMON if k not in NOT_THE_GAME and k not in SCHEDULE_KEYS):
            if cfg.get(key) != COMMON[key]:
                show = width_text if key == "width" else _value
                out.append(f"{key} {show(cfg.get(key))} (paper {show(COMMON[key])})")
    if resolved_precision(cfg, device_type) == "bf16":
        out.append(f"{effective_precision(cfg, device_type)} (paper fp32)")
    if cfg.get("init"):
        out.append(f"fine-tuning from {cfg['init']}")
    return what, out


# ----------------------------------------------------------------------------------------------
# Progress


def cosine(record: dict, latent_dim: int) -> float:
    """The decoder's latent term as a cosine: the raw term is mean_d(2 − â_d·b̂_d) = 2 − cos/D."""
    return latent_dim * (2.0 - record["cos"])


def eta(cfg: dict, samples: int, rate: float, phase: int | None = None) -> tuple[float, float, bool]:
    """(seconds to the end of the phase, to the end of the run, whether later phases remain): at ``rate``,
    which later phases (higher resolutions) will not keep, so the run's is a lower bound then. ``phase``:
    the phase just trained (a log line at a phase's last sample belongs to it), else the one at ``samples``."""
    starts, duration = cfg["phase_starts"], cfg["duration"]
    p = max(i for i, s in enumerate(starts) if s <= samples) if phase is None else phase
    end = min(starts[p + 1] if p + 1 < len(starts) else duration, duration)
    if rate <= 0:
        return math.inf, math.inf, end < duration
    return (end - samples) / rate, (duration - samples) / rate, end < duration


def losses_text(r: dict, latent_dim: int) -> str:
    text = (f"E {r['loss_e']:.4f} (KL {r['kl_real']:.3f}/{r['kl_fake']:.3f} gap {r['kl_gap']:+.4f} "
            f"rec {r['recon']:.4f})  D cos {cosine(r, latent_dim):.3f} KL {r['kl_dec']:.3f} "
            f"cons {r['consistency']:.4f}")
    if "recon_dec" in r:
        text += f" rec {r['recon_dec']:.4f}"
    if "real_code_cos" in r:  # records logged before this monitor existed lack it
        text += f"  codes cos {r['real_code_cos']:.2f}"
    return text


def kimg(samples: int, duration: int) -> str:
    """Samples in thousands (kimg, as StyleGAN), with enough decimals for short runs."""
    digits = 1 if duration >= 100_000 else 3
    return f"kimg {samples / 1000:,.{digits}f}/{duration / 1000:,.{digits}f}"


def progress_line(cfg: dict, r: dict, fid: dict | None = None) -> str:
    """One line per log interval: where the run is, how fast, how long to go, and the latest losses."""
    phase_eta, run_eta, more = eta(cfg, r["samples"], r["images_per_s"], r["phase"])
    line = (f"phase {r['phase']} {r['resolution']}² α {r['alpha']:.2f} | {kimg(r['samples'], cfg['duration'])}"
            f" | {r['images_per_s']:,.1f} img/s | ETA phase "
            f"{duration_text(phase_eta)}, run {'≥ ' if more else ''}{duration_text(run_eta)} | "
            f"{losses_text(r, cfg['latent_dim'])}")
    if fid:
        line += f" | FID {fid['value']:.2f} @ kimg {fid['samples'] / 1000:,.1f}"
    return line


class ProgressReporter:
    """The progress of a run: one ``progress_line`` per log interval (through ``say``), and on a terminal
    also a rich progress bar per phase below them (the finished phases' bars stay on screen)."""

    def __init__(self, cfg: dict, say: Callable[[str], None], interactive: bool | None = None):
        self.cfg, self.say = cfg, say
        self.interactive = sys.stderr.isatty() if interactive is None else interactive
        self.bars = None
        self.task = None
        self.task_phase = None
        self.fid: dict | None = None
        self.last: dict | None = None

    def start(self) -> None:
        if not self.interactive:
            return
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(bar_width=20),
                             TextColumn("{task.fields[where]}"), console=Console(stderr=True), transient=False,
                             refresh_per_second=2)
        self.bars.start()

    def _phase_task(self, plan: dict, samples: int) -> None:
        p = plan["phase"]
        if self.task_phase == p:
            return
        if self.task is not None:
            self.bars.update(self.task, completed=self.bars.tasks[self.task].total)
        start = self.cfg["phase_starts"][p]
        end = min(self.cfg["phase_starts"][p + 1] if p + 1 < len(self.cfg["phase_starts"]) else self.cfg["duration"],
                  self.cfg["duration"])
        self.task = self.bars.add_task(f"phase {p} {plan['resolution']}²", total=max(1, end - start),
                                       completed=samples - start, where="")
        self.task_phase = p

    def update(self, samples: int, plan: dict) -> None:
        """After each iteration (moves the bar; cheap)."""
        if self.bars is None:
            return
        self._phase_task(plan, samples)
        start = self.cfg["phase_starts"][plan["phase"]]
        rate = self.last["images_per_s"] if self.last else 0.0
        phase_eta, run_eta, more = eta(self.cfg, samples, rate, plan["phase"])
        where = (f"α {plan['alpha']:.2f} {kimg(samples, self.cfg['duration'])} {rate:,.1f} img/s ETA "
                 f"{duration_text(phase_eta)}, run {'≥ ' if more else ''}{duration_text(run_eta)}")
        self.bars.update(self.task, completed=samples - start, where=where)

    def record(self, record: dict) -> None:
        """At each log line: the full progress line (above the bars on a terminal)."""
        self.last = record
        line = progress_line(self.cfg, record, self.fid)
        if self.bars is None:
            self.say(line)
        else:
            self.bars.console.print(line, highlight=False, soft_wrap=True)

    def metric(self, record: dict, message: str, show: bool = True) -> None:
        """A metric's result: kept for the progress line, and ``message`` shown (when ``show``)."""
        self.fid = record
        if not show:
            return
        if self.bars is None:
            self.say(message)
        else:
            self.bars.console.print(message)

    def stop(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
