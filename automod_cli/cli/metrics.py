"""Metric verbs: fid, lpips, ppl, weights (parse, call the metrics core, print, record)."""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import typer

from ..errors import UserError
from .common import DeviceOpt, OverwriteOpt, SeedOpt, finish_batch, plural, resolve_device, say
from .progress import VerbProgress

ModelOpt = typer.Option(None, "--model", "-m", help="Model file or cached model name (default: $AUTOMOD_MODEL, else toy64).")
DataOpt = typer.Option(None, "--data", help="Data set: a folder (recursive) or a zip of images.")
WeightsDirOpt = typer.Option(None, "--weights-dir", help="Folder with the metric networks' weights files "
                             "(standard names); then $AUTOMOD_WEIGHTS_DIR, then the torch hub cache.")
JsonOpt = typer.Option(False, "--json", help="Print only the result's JSON line on stdout.")
ResultsOpt = typer.Option(None, "--results", help="JSON-lines log to append the result to "
                          "(default: $AUTOMOD_RESULTS or ./automod-results.jsonl).")
NoRecordOpt = typer.Option(False, "--no-record", help="Do not append the result to the results log.")
AllowFewerOpt = typer.Option(False, "--allow-fewer", help="Use all images when there are fewer than --n.")


# --- shared helpers ----------------------------------------------------------------------------------

@contextlib.contextmanager
def _progress() -> Iterator[Callable[[int, str], Callable[[int], None]]]:
    """``bars(total, label)`` gives the ``advance`` of a verb's progress bar (``cli/progress.py``: on a
    terminal, for more than a screenful of images). A metric's image sets are worked through one after
    another, so a new bar closes the one before."""
    live: list[VerbProgress] = []

    def bars(total: int, label: str) -> Callable[[int], None]:
        while live:
            live.pop().close()
        live.append(VerbProgress(label, total))
        return live[-1].advance

    try:
        yield bars
    finally:
        while live:
            live.pop().close()


def _load_model(path: Optional[Path], device):
    from ..pipeline import load_model

    return load_model(path, device)


def _report(record: dict, rows: list[tuple[str, str]], as_json: bool, results: Optional[Path],
            no_record: bool) -> None:
    from ..metrics.results import append_record, to_json_line

    if not no_record:
        written = append_record(record, results)
        if not as_json:
            say(f"appended to {written}")
    if as_json:
        print(to_json_line(record))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{record['metric']} ({record['variant']})", show_header=False)
    for key, value in rows:
        table.add_row(key, value)
    if not record.get("all_weights_published", True):
        table.add_row("WARNING", "computed with network weights that are not the published files")
    Console().print(table)


def _weights_rows(weights) -> list[tuple[str, str]]:
    return [(f"weights {w.name}", f"{w.path} sha256 {w.sha256[:12]}… "
             f"({'published' if w.published else 'NOT the published file'})") for w in weights]


# --- fid ---------------------------------------------------------------------------------------------

def fid(
    inputs: List[str] = typer.Argument(None, help="Two image sets (folder, zip or .npz stats), or one with "
                                                  "--save-stats."),
    model_path: Optional[Path] = ModelOpt, data: Optional[Path] = DataOpt,
    reconstructions: bool = typer.Option(False, "--reconstructions",
                                         help="Reconstructions of --data against the inputs themselves."),
    n: Optional[int] = typer.Option(None, "--n", min=2, help="Number of images (generated: default 50000; "
                                                             "sets: all)."),
    allow_fewer: bool = AllowFewerOpt,
    batch_size: int = typer.Option(50, "--batch-size", "-b", min=1, help="Images per Inception batch."),
    workers: Optional[int] = typer.Option(None, "--workers", min=0, help="Image decoding processes "
                                                                         "(default: min(8, CPUs))."),
    stats_cache: Optional[Path] = typer.Option(None, "--stats-cache", help="Folder for cached statistics "
                                               "(default: $AUTOMOD_CACHE_DIR/fid-stats or ~/.cache/automod/fid-stats)."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write cached statistics."),
    save_stats: Optional[Path] = typer.Option(None, "--save-stats", help="Write the statistics of the (first) "
                                              "image set to this .npz."),
    weights_dir: Optional[Path] = WeightsDirOpt, device: str = DeviceOpt, seed: int = SeedOpt,
    overwrite: bool = OverwriteOpt, as_json: bool = JsonOpt, results: Optional[Path] = ResultsOpt,
    no_record: bool = NoRecordOpt,
) -> None:
    """Fréchet Inception Distance (TF-compatible protocol): two sets, or a model against a data set."""
    import os

    import torch

    from ..metrics import fid as core
    from ..metrics.results import count_label, make_record

    started = time.perf_counter()
    inputs = list(inputs or [])
    model_mode = model_path is not None or data is not None or reconstructions
    if model_mode and inputs:
        raise UserError("give either two image sets, or -m MODEL --data DIR, not both")
    if not model_mode and not (len(inputs) == 2 or (len(inputs) == 1 and save_stats)):
        raise UserError("fid needs two image sets (folders, zips or .npz statistics), one set with "
                        "--save-stats, or -m MODEL --data DIR")
    if model_mode and data is None:
        raise UserError("--data DIR is required with a model (the data set to compare against)")
    dev = resolve_device(device)
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    cache_dir = None if no_cache else (stats_cache or core.default_cache_dir())
    extractor = core.FeatureExtractor.from_weights(weights_dir, dev)
    skipped: list[tuple[str, str]] = []
    record_data: dict = {}
    model = None

    def set_result(location, want):
        res = core.set_stats(location, extractor, n=want, allow_fewer=allow_fewer, cache_dir=cache_dir,
                             batch_size=batch_size, workers=workers, progress_factory=bars)
        skipped.extend(res.stats.skipped)
        if res.from_cache:
            say(f"{location}: cached statistics {res.cache_file}")
        return res

    def describe(res: core.ImageSetResult) -> dict:
        s = res.stats
        return {"path": s.source, "n": s.n, "content_sha256": s.content_sha256 or None, "stats_sha256": s.sha256(),
                "skipped": len(s.skipped), "cache_file": str(res.cache_file) if res.cache_file else None}

    with _progress() as bars:
        if not model_mode:
            first = set_result(Path(inputs[0]), n)
            if save_stats:
                first.stats.save(save_stats, overwrite=overwrite)
                say(f"wrote {save_stats} (statistics of {plural(first.stats.n, 'image')})")
                if len(inputs) == 1:
                    finish_batch([(Path(p), e) for p, e in skipped], "image")
                    return
            second = set_result(Path(inputs[1]), n)
            a, b = first.stats, second.stats
            record_data = {"first": describe(first), "second": describe(second)}
            variant = f"fid{count_label(a.n)}"
        else:
            torch.manual_seed(seed)
            model = _load_model(model_path, dev)
            if reconstructions:
                items = core.list_images(data)
                if not items:
                    raise UserError("no images found", data)
                if n is not None and len(items) < n and not allow_fewer:
                    raise UserError(f"only {plural(len(items), 'image')}, but --n asks for {n} "
                                    "(use --allow-fewer to use them all)", data)
                want = None if n is None or n >= len(items) else n
                a, b = extractor.paired_stats(
                    items, lambda x: model.decode(model.encode(x.to(dev)), noise=False), model.resolution,
                    n=want, batch_size=batch_size, progress=bars(want or len(items), "reconstructing"))
                skipped.extend(a.skipped)
                if n is not None and a.n < n and not allow_fewer:
                    raise UserError(f"only {a.n} readable images, but --n asks for {n} "
                                    "(use --allow-fewer to use them all)", data)
                a.source, b.source = "reconstructions", str(data)
                record_data = {"data": {"path": str(data), "n": a.n, "content_sha256": core.content_sha256(items),
                                        "skipped": len(a.skipped), "read_at": model.resolution}}
                variant = f"fid{count_label(a.n)}_rec"
            else:
                count = 50000 if n is None else n
                generator = torch.Generator().manual_seed(seed)
                from ..model.codes import random_codes

                def generate(k):
                    return model.decode(random_codes(k, model.latent_dim, generator, dev), noise=False)

                a = extractor.generated_stats(generate, count, batch_size, progress=bars(count, "generating"))
                ref = set_result(data, None)
                b = ref.stats
                record_data = {"generated": {"n": a.n, "noise": False, "quantisation": "round-half-up uint8"},
                               "data": describe(ref)}
                variant = f"fid{count_label(a.n)}"
    result = core.fid_from_stats(a, b)
    weights = [extractor.weights] if extractor.weights else []
    record = make_record(
        "fid", variant, result.value, a.n, weights=weights, wall_s=time.perf_counter() - started,
        device=str(dev), precision=extractor.precision, seed=seed if model_mode else None,
        model=getattr(model, "source_path", None), data=record_data,
        extra={"protocol": core.PROTOCOL, "sqrt_trace": {"scipy_sqrtm": result.trace_sqrt_scipy,
                                                         "eigen": result.trace_sqrt_eigen},
               "diagonal_offset": result.diagonal_offset})
    rows = [("FID", f"{result.value:.4f}"), ("N", f"{a.n} vs {b.n}")]
    rows += [(k, json.dumps(v, default=str)) for k, v in record_data.items()]
    rows += _weights_rows(weights) + [("device", f"{dev} ({extractor.precision})"),
                                      ("wall time", f"{record['wall_s']:.1f} s")]
    _report(record, rows, as_json, results, no_record)
    finish_batch([(Path(p), e) for p, e in skipped], "image")


# --- lpips -------------------------------------------------------------------------------------------

def _pair_folders(first: Path, second: Path):
    """Pair images of two folders by relative path without suffix; unpaired ones are reported."""
    from ..metrics.fid import list_images

    def keyed(folder: Path):
        items = list_images(folder)
        if not items:
            raise UserError("no images found", folder)
        base = folder if folder.is_dir() else folder.parent
        return {str(it.path.relative_to(base).with_suffix("")): it.path for it in items}

    a, b = keyed(first), keyed(second)
    pairs = [(a[k], b[k]) for k in sorted(a) if k in b]
    unpaired = [(a[k], f"{a[k]}: no image of the same name in {second}") for k in sorted(a) if k not in b]
    unpaired += [(b[k], f"{b[k]}: no image of the same name in {first}") for k in sorted(b) if k not in a]
    return pairs, unpaired


def lpips(
    inputs: List[str] = typer.Argument(None, help="Two folders of paired images (same relative names)."),
    model_path: Optional[Path] = ModelOpt, data: Optional[Path] = DataOpt,
    n: Optional[int] = typer.Option(None, "--n", min=1, help="Number of images (default: all)."),
    allow_fewer: bool = AllowFewerOpt,
    crop: str = typer.Option("auto", "--crop", help="face (the paper's crop), none, or auto: face with a "
                                                    "model, none for two folders."),
    net: str = typer.Option("alex", "--net", help="LPIPS network: alex (the protocol) or vgg."),
    batch_size: int = typer.Option(32, "--batch-size", "-b", min=1),
    weights_dir: Optional[Path] = WeightsDirOpt, device: str = DeviceOpt, seed: int = SeedOpt,
    as_json: bool = JsonOpt, results: Optional[Path] = ResultsOpt, no_record: bool = NoRecordOpt,
) -> None:
    """LPIPS: reconstructions of a model over a data set, or two folders of paired images."""
    import torch

    from ..io.images import read_image, read_images
    from ..metrics.fid import content_sha256, list_images
    from ..metrics.lpips import LPIPSDistance, face_crop
    from ..metrics.results import make_record

    started = time.perf_counter()
    inputs = list(inputs or [])
    model_mode = model_path is not None or data is not None
    if model_mode == bool(inputs) or (not model_mode and len(inputs) != 2):
        raise UserError("lpips needs two folders of paired images, or -m MODEL --data DIR")
    if model_mode and data is None:
        raise UserError("--data DIR is required with a model")
    if crop not in ("auto", "face", "none"):
        raise UserError(f"--crop must be face, none or auto, not '{crop}'")
    if net not in ("alex", "vgg"):
        raise UserError(f"--net must be alex or vgg, not '{net}'")
    use_crop = (crop == "face") or (crop == "auto" and model_mode)
    dev = resolve_device(device)
    distance = LPIPSDistance(net, weights_dir, dev)
    values: list[torch.Tensor] = []
    skipped: list[tuple[Path, str]] = []
    model = None

    def measure(x, y):
        if use_crop:
            x, y = face_crop(x), face_crop(y)
        values.append(distance(x, y))

    with _progress() as bars:
        if model_mode:
            torch.manual_seed(seed)
            model = _load_model(model_path, dev)
            items = list_images(data)
            if not items:
                raise UserError("no images found", data)
            if n is not None and len(items) < n and not allow_fewer:
                raise UserError(f"only {plural(len(items), 'image')}, but --n asks for {n} (use --allow-fewer to use them all)",
                                data)
            want = len(items) if n is None else min(n, len(items))
            advance = bars(want, "reconstructing")
            done = 0
            for start in range(0, len(items), batch_size):
                loaded = read_images([it.path for it in items[start:start + batch_size]], size=model.resolution)
                skipped += loaded.failures
                x = loaded.tensor()[: want - done]
                if len(x):
                    rec = model.decode(model.encode(x.to(dev)), noise=False).clamp(-1, 1)
                    measure(x, rec)
                    done += len(x)
                    advance(len(x))
                if done >= want:
                    break
            if n is not None and done < n and not allow_fewer:
                raise UserError(f"only {done} readable images, but --n asks for {n} (use --allow-fewer)", data)
            record_data = {"data": {"path": str(data), "n": done, "content_sha256": content_sha256(items),
                                    "skipped": len(skipped), "read_at": model.resolution},
                           "reconstructions": "float, clamped to [-1, 1], layer noise off"}
        else:
            first, second = Path(inputs[0]), Path(inputs[1])
            pairs, unpaired = _pair_folders(first, second)
            skipped += unpaired
            if n is not None:
                if len(pairs) < n and not allow_fewer:
                    raise UserError(f"only {len(pairs)} image pairs, but --n asks for {n} (use --allow-fewer)")
                pairs = pairs[:n]
            if not pairs:
                raise UserError(f"no image of {first} has a partner of the same name in {second}")
            advance = bars(len(pairs), "pairs")
            pending: list = []

            def flush():
                if pending:
                    measure(torch.stack([p[0] for p in pending]), torch.stack([p[1] for p in pending]))
                    advance(len(pending))
                    pending.clear()

            for pa, pb in pairs:
                try:
                    xa, xb = read_image(pa), read_image(pb)
                except UserError as e:
                    skipped.append((pa, str(e)))
                    continue
                if xa.shape != xb.shape:
                    skipped.append((pa, f"{pa}: {xa.shape[2]}x{xa.shape[1]} but its partner {pb} is "
                                        f"{xb.shape[2]}x{xb.shape[1]}"))
                    continue
                if pending and (pending[0][0].shape != xa.shape or len(pending) >= batch_size):
                    flush()
                pending.append((xa, xb))
            flush()
            record_data = {"first": {"path": str(first)}, "second": {"path": str(second)}, "pairs": len(pairs),
                           "skipped": len(skipped)}
    if not values:
        finish_batch(skipped, "image")
        raise UserError("no image could be measured")
    all_values = torch.cat(values).double()
    value = float(all_values.mean())
    variant = f"lpips_{net}_{'crop' if use_crop else 'nocrop'}"
    record = make_record(
        "lpips", variant, value, len(all_values), weights=[distance.weights], wall_s=time.perf_counter() - started,
        device=str(dev), precision="float32", seed=seed if model_mode else None,
        model=getattr(model, "source_path", None), data=record_data,
        extra={"protocol": {"net": f"{net} v0.1", "inputs": "[-1, 1]",
                            "crop": "img[:, :, 3c:7c, 2c:6c], c = H // 8" if use_crop else "none"},
               "std": float(all_values.std()) if len(all_values) > 1 else 0.0})
    rows = [("LPIPS", f"{value:.5f}"), ("N", str(len(all_values))), ("crop", "face" if use_crop else "none")]
    rows += _weights_rows([distance.weights]) + [("device", str(dev)), ("wall time", f"{record['wall_s']:.1f} s")]
    _report(record, rows, as_json, results, no_record)
    finish_batch(skipped, "image")


# --- ppl ---------------------------------------------------------------------------------------------

def ppl(
    model_path: Optional[Path] = ModelOpt,
    n: int = typer.Option(50000, "--n", min=1, help="Samples (50k as in StyleGAN2-ADA; 100k in StyleGAN)."),
    sampling: str = typer.Option("full", "--sampling", help="full (t ~ U[0,1]) or end (t = 0)."),
    crop: bool = typer.Option(True, "--crop/--no-crop", help="The face crop (on by default)."),
    net: str = typer.Option("vgg", "--net", help="LPIPS network: vgg (the protocol) or alex."),
    epsilon: float = typer.Option(1e-4, "--epsilon", min=1e-8, help="Step along the path."),
    batch_size: int = typer.Option(16, "--batch-size", "-b", min=1),
    weights_dir: Optional[Path] = WeightsDirOpt, device: str = DeviceOpt, seed: int = SeedOpt,
    as_json: bool = JsonOpt, results: Optional[Path] = ResultsOpt, no_record: bool = NoRecordOpt,
) -> None:
    """Perceptual path length (StyleGAN protocol on the unit sphere, percentile-filtered)."""
    from ..metrics.lpips import LPIPSDistance
    from ..metrics.ppl import perceptual_path_length
    from ..metrics.results import make_record

    started = time.perf_counter()
    if sampling not in ("full", "end"):
        raise UserError(f"--sampling must be full or end, not '{sampling}'")
    if net not in ("alex", "vgg"):
        raise UserError(f"--net must be vgg or alex, not '{net}'")
    dev = resolve_device(device)
    distance = LPIPSDistance(net, weights_dir, dev)
    model = _load_model(model_path, dev)
    with _progress() as bars:
        result = perceptual_path_length(lambda z: model.decode(z, noise=False), distance, n, model.latent_dim,
                                        sampling, crop, epsilon, batch_size, seed, dev, bars(n, "path lengths"))
    variant = result.variant if net == "vgg" else f"{result.variant}_{net}"
    record = make_record(
        "ppl", variant, result.value, result.n, weights=[distance.weights], wall_s=time.perf_counter() - started,
        device=str(dev), precision="float32", seed=seed, model=model.source_path,
        extra={"n_kept": result.n_kept, "protocol": {
            "epsilon": epsilon, "sampling": sampling, "interpolation": "slerp on the unit sphere",
            "crop": "img[:, :, 3c:7c, 2c:6c], c = H // 8" if crop else "none", "downsample": "box to 256 if larger",
            "images": "float (no uint8 cast), layer noise off", "distance": f"lpips {net} v0.1 / epsilon^2",
            "filter": "1st-99th percentile"}})
    rows = [("PPL", f"{result.value:.4f}"), ("N", f"{result.n} ({result.n_kept} within 1st-99th percentile)"),
            ("variant", variant)] + _weights_rows([distance.weights]) + [
            ("device", str(dev)), ("wall time", f"{record['wall_s']:.1f} s")]
    _report(record, rows, as_json, results, no_record)


# --- weights -----------------------------------------------------------------------------------------

def weights(weights_dir: Optional[Path] = WeightsDirOpt, as_json: bool = JsonOpt) -> None:
    """List the metric networks' weights files: status, path and SHA-256."""
    from ..metrics.weights import status

    rows = status(weights_dir)
    if as_json:
        print(json.dumps(rows))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="metric network weights")
    table.add_column("network", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("sha256", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["status"], r["path"] or f"{r['file']} (published at {r['url']})",
                      (r["sha256"] or "")[:16])
    Console().print(table)


def register(app: typer.Typer) -> None:
    app.command("fid")(fid)
    app.command("lpips")(lpips)
    app.command("ppl")(ppl)
    app.command("weights")(weights)
