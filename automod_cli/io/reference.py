"""Import the reference implementation's checkpoints (AaltoVision/automodulator, ``Session.save_all``).

A reference checkpoint is a torch pickle of one dict: ``G_running_state_dict`` (the EMA decoder, the
one the reference evaluates with), ``G_state_dict`` (training decoder, ignored), ``D_state_dict``
(the encoder, without its spectral-norm u vectors), ``SNU`` (the 18 u vectors, [C_out, 1] each),
optimizer states, ``iteration``, ``phase`` and ``alpha``. It is read with
``torch.load(weights_only=True)`` only: a file holding anything but tensors and plain containers is
refused, never unpickled.

Mapping (block i = resolution 4·2^i; the reference numbers encoder layers from the top, 8 − i):

  decoder.blocks.0.conv1         <- progression.0.conv.1.conv         (weight = weight_orig · weight_gain)
  decoder.blocks.i.conv1 (i ≥ 1) <- progression.i.conv.0.0.conv
  decoder.blocks.i.conv2         <- progression.i.conv.1.conv
  decoder.blocks.0.adain1.style  <- adanorm_blocks.0.mod
  decoder.blocks.i.adain{1,2}    <- adanorm_blocks.{2i-1, 2i}.mod      (aliases: progression.i.conv.{0.3,3}.mod)
  decoder.blocks.i.noise{1,2}    <- noise.i.{0,1}.noise_scale
  decoder.to_rgb.i               <- to_rgb.i
  encoder.blocks.i.conv{1,2}     <- D progression.(8-i).conv.{0,2}.conv, u <- SNU[2(8-i)], SNU[2(8-i)+1]
  encoder.from_rgb.i             <- D from_rgb.(8-i)

Our EqualConv2d applies sqrt(2 / fan_in) at run time like the reference, so only the (normally 1.0)
``weight_gain`` is folded into the stored weight. Our spectral-norm conv computes sigma from the stored
u with the reference's one-step formula, so u is copied as is.
"""

from __future__ import annotations

import math
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import ModelFileError
from ..model.automodulator import Automodulator
from ..model.config import DECODER_CHANNELS, MAX_RESOLUTION, ModelConfig
from .modelfile import file_sha256

REFERENCE_MAX_PHASE = 8  # the reference's largest model is 1024² (9 blocks)
REFERENCE_BLOCKS = REFERENCE_MAX_PHASE + 1
LATENT_DIM = 512
PREFIX = "module."  # the reference saves nn.DataParallel wrappers
REQUIRED_TOP_KEYS = ("G_running_state_dict", "D_state_dict", "SNU")


# --- reading -------------------------------------------------------------------------------------

def load_reference_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a reference checkpoint safely (``torch.load(weights_only=True)``) and check its top level."""
    ck = _load_tensors_only(path, "torch checkpoint")
    _check_top_level(ck, path)
    return ck


def load_reference_attribute(path: str | Path, latent_dim: int = LATENT_DIM) -> torch.Tensor:
    """One of the reference's attribute directions (``pioneer/attrib/*``): a pickled ``(1, 512)`` tensor,
    saved with the legacy ``torch.save`` from a CUDA device. Read with ``weights_only=True`` onto the CPU;
    anything but one finite float tensor of ``latent_dim`` values is refused. Returns it as float32 [D]."""
    obj = _load_tensors_only(path, "torch file")
    if not isinstance(obj, torch.Tensor):
        raise ModelFileError(f"not an attribute direction: the file holds a {type(obj).__name__}, expected one "
                             f"(1, {latent_dim}) tensor", path)
    if not obj.is_floating_point() or tuple(obj.shape) not in ((1, latent_dim), (latent_dim,)):
        raise ModelFileError(f"not an attribute direction: a {str(obj.dtype).replace('torch.', '')} tensor of "
                             f"shape {list(obj.shape)}, expected a float (1, {latent_dim}) tensor", path)
    if not torch.isfinite(obj).all():
        raise ModelFileError("the attribute direction holds NaN or infinite values", path)
    return obj.detach().reshape(latent_dim).to(torch.float32).clone()


def _load_tensors_only(path: str | Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` onto the CPU, with one clear line for every way it can fail."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError("no such file", path)
    if not path.is_file():
        raise ModelFileError("not a file", path)
    with open(path, "rb") as f:
        head = f.read(64)
    if not head.startswith((b"PK\x03\x04", b"\x80")):  # torch files are zip archives or (legacy) pickles
        raise ModelFileError(f"not a {what}: {_describe_start(head)}", path)
    try:
        with warnings.catch_warnings():  # torch's note on a plain pickle's protocol says nothing to a user
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        text = str(e)
        if "Weights only load failed" in text:
            detail = _weights_only_reason(text)
            raise ModelFileError("refused: the file holds Python objects other than tensors and plain containers"
                                 f"{f' ({detail})' if detail else ''}; automod never unpickles them", path) from None
        raise ModelFileError(f"not a {what} ({_first_line(text)})", path) from None
    except MemoryError:
        raise
    except Exception as e:  # arbitrary bytes make the unpickler fail in arbitrary ways
        reason = _first_line(str(e)) or type(e).__name__
        raise ModelFileError(f"not a {what} (or a truncated one): {reason}", path) from None


def _check_top_level(ck: Any, path: str | Path | None) -> None:
    if not isinstance(ck, dict):
        raise ModelFileError(f"not a reference automodulator checkpoint (holds a {type(ck).__name__}, "
                             "expected a dict with G_running_state_dict, D_state_dict, SNU)", path)
    missing = [k for k in REQUIRED_TOP_KEYS if k not in ck]
    if missing:
        found = ", ".join(sorted(map(str, ck))[:6]) or "nothing"
        raise ModelFileError(f"not a reference automodulator checkpoint: missing {', '.join(missing)} "
                             f"(it has: {found})", path)


def _describe_start(head: bytes) -> str:
    if not head:
        return "the file is empty"
    text = head.decode("utf-8", "replace").strip()
    if text[:1] == "<" and "html" in text.lower():
        return f"an HTML page (starts {text[:40]!r}), e.g. a server's error page"
    if text.isprintable():
        return f"a text file (starts {text[:40]!r})"
    return "neither a zip archive nor a pickle"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _weights_only_reason(text: str) -> str:
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return f"it needs the class {m.group(1)}"
    m = re.search(r"WeightsUnpickler error:\s*(.+)", text)
    return m.group(1).strip()[:120] if m else ""


# --- converting ----------------------------------------------------------------------------------

def convert_reference_checkpoint(path: str | Path, resolution: int | None = None) -> Automodulator:
    """Read a reference checkpoint and return the equivalent Automodulator (eval mode, on the CPU).

    The top resolution is the checkpoint's ``phase`` (clamped to 0..8, as the reference does) unless
    ``resolution`` asks for a smaller one (a lower-resolution sub-model of the same weights).
    """
    path = Path(path)
    ck = load_reference_checkpoint(path)
    source = {"source_file": path.name, "source_sha256": file_sha256(path)}
    model = automodulator_from_reference(ck, resolution, source=source, path=path)
    released = _released_as(path.name, model)
    if released is not None:  # a released file under its own name: say what it was trained on
        model.provenance.update(released.facts())
    return model


def _released_as(filename: str, model: Automodulator):
    """The released model this is, when the file keeps its released name and its iteration and decoder match."""
    from ..hub.catalog import RELEASED

    for entry in RELEASED.values():
        if filename == entry.filename and model.provenance.get("iteration") == entry.iteration \
                and model.config.variant == entry.variant:
            return entry
    return None


def automodulator_from_reference(ck: dict[str, Any], resolution: int | None = None,
                                 source: dict[str, Any] | None = None,
                                 path: str | Path | None = None) -> Automodulator:
    """Build an Automodulator from an already loaded reference checkpoint dict (see module docstring)."""
    _check_top_level(ck, path)
    g = _strip_prefix(ck["G_running_state_dict"], "G_running_state_dict", path)
    d = _strip_prefix(ck["D_state_dict"], "D_state_dict", path)
    snu = ck["SNU"]
    if not isinstance(snu, (list, tuple)) or len(snu) != 2 * REFERENCE_BLOCKS \
            or not all(isinstance(u, torch.Tensor) for u in snu):
        raise ModelFileError(f"SNU must be a list of {2 * REFERENCE_BLOCKS} tensors "
                             f"(the encoder's spectral-norm u vectors)", path)

    phase = _checkpoint_phase(ck, path)
    trained_resolution = 4 * 2**phase
    if resolution is None:
        resolution = trained_resolution
    if not isinstance(resolution, int) or resolution < 4 or resolution > MAX_RESOLUTION or resolution & (resolution - 1):
        raise ModelFileError(f"resolution must be a power of two from 4 to {MAX_RESOLUTION}, got {resolution}", path)
    if resolution > trained_resolution:
        raise ModelFileError(f"the checkpoint is trained up to {trained_resolution}² (phase {phase}); "
                             f"it has no trained {resolution}² layers", path)
    n_blocks = int(math.log2(resolution)) - 1

    variant = _detect_variant(g, path)
    alpha = ck.get("alpha", 1.0)
    alpha = float(alpha) if isinstance(alpha, (int, float)) else None
    iteration = ck.get("iteration")
    provenance = {
        "source": "reference checkpoint (AaltoVision/automodulator)",
        **(source or {}),
        "iteration": int(iteration) if isinstance(iteration, int) else None,
        "phase": phase,
        "alpha": alpha,
        "decoder": "G_running_state_dict (EMA)",
        "converted_resolution": resolution,
    }
    model = Automodulator(ModelConfig(resolution=resolution, variant=variant, width=1.0, latent_dim=LATENT_DIM),
                          provenance=provenance)

    tensors = {f"decoder.{k}": v for k, v in _decoder_tensors(g, n_blocks, path).items()}
    tensors.update({f"encoder.{k}": v for k, v in _encoder_tensors(d, snu, n_blocks, path).items()})
    _load_into(model, tensors, path)
    return model.eval()


def _strip_prefix(sd: Any, name: str, path: str | Path | None) -> dict[str, torch.Tensor]:
    if not isinstance(sd, dict):
        raise ModelFileError(f"{name} is a {type(sd).__name__}, expected a state dict", path)
    out = {}
    for k, v in sd.items():
        if isinstance(k, str) and isinstance(v, torch.Tensor):
            out[k[len(PREFIX):] if k.startswith(PREFIX) else k] = v
    return out


def _checkpoint_phase(ck: dict[str, Any], path: str | Path | None) -> int:
    phase = ck.get("phase")
    if isinstance(phase, bool) or not isinstance(phase, int):
        raise ModelFileError(f"unsupported phase {phase!r} (expected an integer 0..{REFERENCE_MAX_PHASE})", path)
    return min(max(phase, 0), REFERENCE_MAX_PHASE)  # Session.max_phase clamps the same way


def _detect_variant(g: dict[str, torch.Tensor], path: str | Path | None) -> str:
    """large or small, from the output channels of the decoder blocks present."""
    channels = {}
    for i in range(REFERENCE_BLOCKS):
        key = "progression.0.conv.1.conv.weight_orig" if i == 0 else f"progression.{i}.conv.1.conv.weight_orig"
        if key in g and g[key].dim() == 4:
            channels[i] = g[key].shape[0]
    for variant, plan in DECODER_CHANNELS.items():  # "large" first: it wins when blocks 4..8 are absent
        if all(plan[i] == c for i, c in channels.items()):
            return variant
    found = [channels.get(i) for i in range(REFERENCE_BLOCKS)]
    raise ModelFileError(f"decoder channels {found} match neither the large {list(DECODER_CHANNELS['large'])} "
                         f"nor the small {list(DECODER_CHANNELS['small'])} plan", path)


class _Picker:
    """Looks up reference keys, collecting every missing one so that the error names them all."""

    def __init__(self, sd: dict[str, torch.Tensor], name: str):
        self.sd, self.name, self.missing = sd, name, []

    def get(self, *names: str) -> torch.Tensor | None:
        for n in names:  # the first name is the canonical one, the rest are aliases of the same tensor
            if n in self.sd:
                return self.sd[n].detach().to(torch.float32)
        self.missing.append(PREFIX + names[0])
        return None

    def check(self, path: str | Path | None) -> None:
        if self.missing:
            shown = ", ".join(self.missing[:6]) + (f" and {len(self.missing) - 6} more" if len(self.missing) > 6 else "")
            raise ModelFileError(f"{self.name} lacks {shown}", path)


def _decoder_tensors(g: dict[str, torch.Tensor], n_blocks: int, path) -> dict[str, torch.Tensor]:
    pick = _Picker(g, "G_running_state_dict")
    out: dict[str, torch.Tensor | None] = {}

    def equal_conv(ours: str, ref: str) -> None:
        w, gain, b = pick.get(f"{ref}.weight_orig"), pick.get(f"{ref}.weight_gain"), pick.get(f"{ref}.bias")
        out[f"{ours}.weight"] = None if w is None or gain is None else w * gain
        out[f"{ours}.bias"] = b

    def adanorm(ours: str, k: int, alias: str) -> None:
        for p in ("weight", "bias"):
            out[f"{ours}.style.{p}"] = pick.get(f"adanorm_blocks.{k}.mod.{p}", f"{alias}.mod.{p}")

    for i in range(n_blocks):
        blk = f"blocks.{i}"
        if i == 0:
            equal_conv(f"{blk}.conv1", "progression.0.conv.1.conv")
            adanorm(f"{blk}.adain1", 0, "progression.0.conv.3")
        else:
            equal_conv(f"{blk}.conv1", f"progression.{i}.conv.0.0.conv")
            adanorm(f"{blk}.adain1", 2 * i - 1, f"progression.{i}.conv.0.3")
            equal_conv(f"{blk}.conv2", f"progression.{i}.conv.1.conv")
            adanorm(f"{blk}.adain2", 2 * i, f"progression.{i}.conv.3")
            out[f"{blk}.noise1.scale"] = pick.get(f"noise.{i}.0.noise_scale")
            out[f"{blk}.noise2.scale"] = pick.get(f"noise.{i}.1.noise_scale")
        out[f"to_rgb.{i}.weight"] = pick.get(f"to_rgb.{i}.weight")
        out[f"to_rgb.{i}.bias"] = pick.get(f"to_rgb.{i}.bias")
    pick.check(path)
    return out  # type: ignore[return-value]


def _encoder_tensors(d: dict[str, torch.Tensor], snu, n_blocks: int, path) -> dict[str, torch.Tensor]:
    pick = _Picker(d, "D_state_dict")
    out: dict[str, torch.Tensor | None] = {}
    for i in range(n_blocks):
        k = REFERENCE_MAX_PHASE - i
        for ours, ref, u in (("conv1", f"progression.{k}.conv.0.conv", snu[2 * k]),
                             ("conv2", f"progression.{k}.conv.2.conv", snu[2 * k + 1])):
            out[f"blocks.{i}.{ours}.weight"] = pick.get(f"{ref}.weight_orig")
            out[f"blocks.{i}.{ours}.bias"] = pick.get(f"{ref}.bias")
            out[f"blocks.{i}.{ours}.u"] = u.detach().to(torch.float32).reshape(-1)
        out[f"from_rgb.{i}.weight"] = pick.get(f"from_rgb.{k}.weight")
        out[f"from_rgb.{i}.bias"] = pick.get(f"from_rgb.{k}.bias")
    pick.check(path)
    return out  # type: ignore[return-value]


def _reference_name(ours: str) -> str:
    """Our parameter name -> the reference key it came from (for error messages)."""
    part, rest = ours.split(".", 1)
    m = re.match(r"(blocks|to_rgb|from_rgb)\.(\d+)\.(.*)", rest)
    if not m:
        return ours
    kind, i, tail = m.group(1), int(m.group(2)), m.group(3)
    if part == "decoder":
        if kind == "to_rgb":
            return f"G_running_state_dict: {PREFIX}to_rgb.{i}.{tail}"
        table = {"conv1": "progression.0.conv.1.conv" if i == 0 else f"progression.{i}.conv.0.0.conv",
                 "conv2": f"progression.{i}.conv.1.conv", "adain1": f"adanorm_blocks.{max(2 * i - 1, 0)}",
                 "adain2": f"adanorm_blocks.{2 * i}", "noise1": f"noise.{i}.0", "noise2": f"noise.{i}.1"}
        layer = tail.split(".")[0]
        return f"G_running_state_dict: {PREFIX}{table.get(layer, layer)} ({ours})"
    k = REFERENCE_MAX_PHASE - i
    if kind == "from_rgb":
        return f"D_state_dict: {PREFIX}from_rgb.{k}.{tail}"
    layer, param = tail.split(".")
    if param == "u":
        return f"SNU[{2 * k + (layer == 'conv2')}]"
    return f"D_state_dict: {PREFIX}progression.{k}.conv.{0 if layer == 'conv1' else 2}.conv ({ours})"


def _load_into(model: Automodulator, tensors: dict[str, torch.Tensor], path) -> None:
    expected = {f"{part}.{k}": v for part in ("encoder", "decoder")
                for k, v in getattr(model, part).state_dict().items()}
    missing = sorted(set(expected) - set(tensors))
    if missing:  # a mapping bug, not a user error
        raise RuntimeError(f"converter does not fill {missing[:5]}")
    wrong = [f"{_reference_name(k)} is {list(v.shape)}, expected {list(expected[k].shape)}"
             for k, v in tensors.items() if v.shape != expected[k].shape]
    if wrong:
        raise ModelFileError(f"wrong tensor shape{'s' if len(wrong) > 1 else ''}: {'; '.join(wrong[:4])}"
                             f"{' …' if len(wrong) > 4 else ''}", path)
    with torch.no_grad():
        for part in ("encoder", "decoder"):
            sub = {k[len(part) + 1:]: v for k, v in tensors.items() if k.startswith(part + ".")}
            getattr(model, part).load_state_dict(sub)


# --- the CLI verb's core -------------------------------------------------------------------------

def convert_command_core(src: str | Path, dst: str | Path, resolution: int | None = None,
                         overwrite: bool = False) -> dict[str, Any]:
    """Convert ``src`` (a reference .pth) to an automod model file ``dst``; return a summary to print."""
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve():
        raise ModelFileError("the output would replace the input checkpoint", dst)
    if dst.exists() and not overwrite:  # checked before the slow part; save() checks again
        raise ModelFileError("exists already (use --overwrite to replace it)", dst)
    model = convert_reference_checkpoint(src, resolution)
    model.save(dst, overwrite=overwrite)
    prov = model.provenance
    notes = []
    if prov.get("alpha") is not None and prov["alpha"] < 1.0:
        notes.append(f"the checkpoint was saved mid fade-in (alpha={prov['alpha']:g}); "
                     "the converted model always decodes at alpha = 1")
    if model.resolution < 4 * 2 ** prov["phase"]:
        notes.append(f"kept the {model.resolution}² sub-model of a {4 * 2 ** prov['phase']}² checkpoint")
    return {"source": str(src), "output": str(dst), "variant": model.config.variant,
            "resolution": model.resolution, "n_blocks": model.n_blocks, "phase": prov["phase"],
            "alpha": prov["alpha"], "iteration": prov["iteration"], "sha256": prov["source_sha256"],
            "encoder_parameters": sum(p.numel() for p in model.encoder.parameters()),
            "decoder_parameters": sum(p.numel() for p in model.decoder.parameters()), "notes": notes}
