"""Metrics during training (as StyleGAN2-ADA's ``--metrics``): FID of the EMA decoder's samples against
the training data, computed with the ``automod fid`` code (``metrics/fid.py``: the same FID Inception,
protocol, uint8 quantisation and statistics cache).

What is compared, at the phase the run is in: ``metrics_n`` random samples of the EMA decoder (codes
drawn from a generator seeded 0 at every evaluation, so evaluations differ only by the weights; layer
noise off, as at inference) against ``metrics_n`` training images read the way the trainer reads them
(centre crop, Lanczos to the phase's resolution, no mirroring), chosen by a fixed permutation. At the top
phase, with the data at the model's resolution, this is what ``automod fid -m RUN/model.safetensors --data
DATA --n N`` measures on the same images. During a fade the samples are blends of two resolutions, so
the value is higher there. The real statistics are cached per resolution in the FID cache
(``$AUTOMOD_CACHE_DIR/fid-stats``) under a key of the chosen files' bytes, the resolution, the protocol
and the Inception weights.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import torch

from ..errors import InputError

READER = "automod-train-real-v1: centre crop, Lanczos to the phase's resolution, no mirror"


class TrainingFID:
    def __init__(self, dataset, n: int, device: torch.device, weights_dir: str | Path | None = None,
                 cache_dir: Path | None = None, batch_size: int = 50):
        from ..metrics import fid as core

        self.core = core
        self.ds, self.n, self.device, self.batch_size = dataset, int(n), torch.device(device), batch_size
        # Resolved now: missing Inception weights stop the run before it trains, not hours later.
        self.extractor = core.FeatureExtractor.from_weights(weights_dir, self.device)
        self.cache_dir = core.default_cache_dir() if cache_dir is None else Path(cache_dir)
        self._real: dict[int, tuple] = {}

    def _chosen(self) -> tuple[list[int], str]:
        """The first ``n`` readable images in a fixed order, and a hash of their names and bytes."""
        order = torch.randperm(len(self.ds), generator=torch.Generator().manual_seed(0)).tolist()
        chosen, h = [], hashlib.sha256(READER.encode())
        for i in order:
            if len(chosen) >= self.n:
                break
            name = self.ds.names[i]
            try:
                data = self.ds.source.read(name)
            except (OSError, KeyError):
                continue
            h.update(name.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(data).digest())
            chosen.append(i)
        return chosen, h.hexdigest()

    def real_stats(self, resolution: int):
        """(statistics, cache file, whether it came from the cache) of the training data at ``resolution``."""
        if resolution in self._real:
            return self._real[resolution]
        core = self.core
        chosen, content = self._chosen()
        key = core.stats_key(f"{content}@{resolution}", self.extractor.weights_key(), len(chosen))
        name = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in self.ds.root.name) or "data"
        cache = self.cache_dir / f"train-{name}-{resolution}px-{key[:20]}.npz"
        stats, from_cache = None, False
        if cache.is_file():
            try:
                cached = core.load_stats(cache)
                if cached.key == key:
                    stats, from_cache = cached, True
            except InputError:
                pass  # a damaged entry is recomputed and replaced
        if stats is None:
            good = []
            for i in chosen:
                try:
                    good.append(self.ds.read(i, resolution=resolution))
                except InputError:
                    continue
            served = iter(range(0, len(good), self.batch_size))

            def real(k):
                start = next(served)
                return torch.stack(good[start:start + k])

            stats = self.extractor.generated_stats(real, len(good), self.batch_size, source=str(self.ds.root))
            stats.key = key
            if len(good) == len(chosen):
                stats.save(cache, overwrite=True)  # content-keyed: replacing an entry never loses anything
            else:
                cache = None
        stats.source, stats.content_sha256 = f"{self.ds.root} at {resolution}²", content
        self._real[resolution] = (stats, cache, from_cache)
        return self._real[resolution]

    @torch.no_grad()
    def evaluate(self, decoder, phase: int, alpha: float, resolution: int, latent_dim: int, samples: int) -> dict:
        """FID of ``metrics_n`` EMA samples against the data at this phase: a results record (as ``automod
        fid`` writes) with the training position added."""
        from ..metrics.results import count_label, make_record
        from ..model.codes import random_codes
        from .networks import run_decoder

        started = time.perf_counter()
        real, cache, from_cache = self.real_stats(resolution)
        generator = torch.Generator().manual_seed(0)

        def generate(k):
            codes = random_codes(k, latent_dim, generator, self.device)
            return run_decoder(decoder, codes, phase, alpha, False)[0].float()

        with torch.random.fork_rng(devices=[]):  # nothing here may move the training's random streams
            fake = self.extractor.generated_stats(generate, self.n, self.batch_size, source="EMA samples")
        result = self.core.fid_from_stats(fake, real)
        weights = [self.extractor.weights] if self.extractor.weights else []
        return make_record(
            "fid", f"fid{count_label(self.n)}", result.value, self.n, weights=weights,
            wall_s=time.perf_counter() - started, device=str(self.device), precision=self.extractor.precision,
            seed=0, data={"path": str(self.ds.root), "n": real.n, "read_at": resolution,
                          "content_sha256": real.content_sha256, "stats_sha256": real.sha256(),
                          "cache_file": str(cache) if cache else None, "from_cache": from_cache},
            extra={"samples": samples, "phase": phase, "resolution": resolution, "alpha": round(alpha, 6),
                   "generated": {"n": fake.n, "decoder": "EMA", "noise": False, "codes_seed": 0,
                                 "quantisation": "round-half-up uint8"},
                   "protocol": self.core.PROTOCOL})
