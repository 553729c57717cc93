"""Data-set-scale plumbing for the verbs: inputs read ahead in worker processes, outputs written behind.

``ImageStream`` reads image files (aligning faces first with ``align=True``) in DataLoader worker
processes a few batches ahead of the model, so decoding PNGs and JPEGs overlaps computing and memory
holds a few batches whatever the number of inputs. Each ``InputBatch`` carries its good images (uint8;
in pinned memory when the model is on CUDA, copied with ``non_blocking``) and the reasons its bad
inputs were skipped. ``BackgroundWriter`` saves outputs in a thread while the model computes the next
batch; a failed write stops the run with that error.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch

from .errors import InputError, UserError
from .io.images import ResizeWarning, describe_fit, open_image, square_and_resize, unique_names

PREFETCH_BATCHES = 2  # batches each worker keeps ready ahead of the model


# glibc hands freed blocks above its (adaptive) mmap threshold back to the operating system and trims the
# heap top, so a loop of same-sized batches faults the same memory in again every batch: at 64² the
# encoder spent a third of its time in page faults (784k faults for 2,000 images; 36k with these).
MALLOC_TRIM_THRESHOLD = 512 << 20  # keep up to this much freed memory at the top of the heap
MALLOC_MMAP_THRESHOLD = 256 << 20  # serve blocks below this from the heap, not from fresh mappings
_ALLOCATOR_TUNED: list = []  # [the tuned C library's handle, or None], once decided
# The freed memory kept that way fragments as batches, outputs waiting to be written and long-lived
# results interleave, and the heap grew with the number of images (reconstruct of 10,000 64² faces:
# 1.2-1.7 GB against 0.9-1.0 GB for 2,000); handing the free pages back every few batches keeps it near
# 0.8-1.0 GB (2,000: 0.7-0.8 GB) at no measurable cost in speed.
TRIM_EVERY_BATCHES = 4


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for the next batch (process-wide; once; a no-op where
    the C library is not glibc). Returns whether the setting took."""
    if _ALLOCATOR_TUNED:
        return _ALLOCATOR_TUNED[0] is not None
    libc = None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        if not (libc.mallopt(-1, MALLOC_TRIM_THRESHOLD) and libc.mallopt(-3, MALLOC_MMAP_THRESHOLD)):
            libc = None
    except (OSError, AttributeError):  # not Linux/glibc
        libc = None
    _ALLOCATOR_TUNED.append(libc)
    return libc is not None


def release_freed_memory() -> None:
    """Give the free pages of the heap back to the operating system (glibc's malloc_trim; where the
    allocator was not tuned, a no-op)."""
    if _ALLOCATOR_TUNED and _ALLOCATOR_TUNED[0] is not None:
        _ALLOCATOR_TUNED[0].malloc_trim(0)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def default_workers(n_inputs: int, batch_size: int) -> int:
    """Worker processes for reading ``n_inputs``: none for a single batch (nothing to overlap), else one
    per core but one (the model gets the rest), at least 1 and at most 8."""
    if n_inputs <= batch_size:
        return 0
    return max(1, min(8, available_cpus() - 1))


@dataclass
class InputBatch:
    """One batch of inputs: the readable ones as uint8 images, the unreadable ones with reasons."""

    indices: list[int]                       # positions of the good inputs in the stream's input list
    paths: list[Path]
    names: list[str]                         # output names (unique over the whole input list)
    images: torch.Tensor                     # uint8 [B, 3, R, R]
    sidecars: list[dict | None]              # alignment records (with align=True)
    failures: list[tuple[Path, str]]
    fitted: list[tuple[Path, tuple[int, int]]]  # inputs centre-cropped / resized, with their original size
    count: int                               # inputs this batch covered, good and bad

    def __len__(self) -> int:
        return len(self.paths)

    def pin_memory(self) -> "InputBatch":
        """Called by the DataLoader's pinning thread when the model is on CUDA."""
        self.images = self.images.pin_memory()
        return self

    def float_images(self, device: torch.device | str = "cpu") -> torch.Tensor:
        """[B, 3, R, R] float32 in [-1, 1] on ``device`` (copied as uint8, converted there)."""
        x = self.images.to(device, non_blocking=True)
        return x.float() / 127.5 - 1.0  # the same arithmetic as io.images.pil_to_tensor


def _uint8_chw(im) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


class ImageFiles(torch.utils.data.Dataset):
    """Image files decoded at ``size``² (optionally FFHQ-aligned); a bad file is a reason, not an error."""

    def __init__(self, paths: Sequence[Path], size: int, align: bool = False,
                 align_options: dict[str, Any] | None = None):
        self.paths = [Path(p) for p in paths]
        self.names = unique_names(self.paths)
        self.size = int(size)
        self.align = align
        self.align_options = dict(align_options or {})

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple:
        path = self.paths[i]
        try:
            if self.align:
                from .align import align_faces  # dlib loads in the process that aligns

                face = align_faces(path, self.size, faces="largest", **self.align_options)[0]
                return i, _uint8_chw(face.image), None, face.sidecar, None
            im, original = square_and_resize(open_image(path), self.size)
            return i, _uint8_chw(im), None, None, original
        except InputError as e:
            return i, None, str(e), None, None
        except (OSError, ValueError, MemoryError) as e:  # from the aligner's arithmetic on odd photos
            return i, None, f"{path}: {type(e).__name__}: {e}", None, None

    def collate(self, items: list[tuple]) -> InputBatch:
        good = [it for it in items if it[1] is not None]
        images = (torch.stack([it[1] for it in good]) if good
                  else torch.empty(0, 3, self.size, self.size, dtype=torch.uint8))
        return InputBatch(
            indices=[it[0] for it in good], paths=[self.paths[it[0]] for it in good],
            names=[self.names[it[0]] for it in good], images=images, sidecars=[it[3] for it in good],
            failures=[(self.paths[it[0]], it[2]) for it in items if it[1] is None],
            fitted=[(self.paths[it[0]], it[4]) for it in good if it[4] is not None], count=len(items))


class ImageStream:
    """Iterate over image files in batches read ahead by ``workers`` processes (see the module doc).

    After (or during) iteration, ``failures`` lists the skipped inputs and ``fit_messages()`` says, once
    per original size, which inputs were centre-cropped or resized.
    """

    def __init__(self, paths: Sequence[Path], size: int, batch_size: int = 16, workers: int | None = None,
                 device: torch.device | str = "cpu", align: bool = False,
                 align_options: dict[str, Any] | None = None):
        if batch_size < 1:
            raise UserError(f"the batch size must be at least 1, got {batch_size}")
        self.dataset = ImageFiles(paths, size, align, align_options)
        self.size = int(size)
        self.batch_size = int(batch_size)
        self.workers = default_workers(len(self.dataset), batch_size) if workers is None else int(workers)
        self.device = torch.device(device)
        self.failures: list[tuple[Path, str]] = []
        self.fits: dict[tuple[int, int], list] = {}  # original size -> [count, first path]
        self.n_read = 0

    @property
    def paths(self) -> list[Path]:
        return self.dataset.paths

    @property
    def names(self) -> list[str]:
        return self.dataset.names

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[InputBatch]:
        if self.dataset.align:
            _check_aligner()  # one error for the whole run, not one per input
        workers = min(self.workers, max(1, -(-len(self.dataset) // self.batch_size)))
        loader = torch.utils.data.DataLoader(
            self.dataset, batch_size=self.batch_size, shuffle=False, num_workers=workers,
            collate_fn=self.dataset.collate, pin_memory=self.device.type == "cuda",
            prefetch_factor=PREFETCH_BATCHES if workers else None)
        for k, batch in enumerate(loader, 1):
            self.failures += batch.failures
            for path, original in batch.fitted:
                self.fits.setdefault(original, [0, path])[0] += 1
            self.n_read += batch.count
            yield batch
            if k % TRIM_EVERY_BATCHES == 0:
                release_freed_memory()

    def fit_messages(self) -> list[str]:
        """One line per original size of the inputs that were cropped or resized."""
        out = []
        for original, (count, first) in self.fits.items():
            what = describe_fit(original, self.size)
            out.append(f"{first}: {what}" if count == 1 else f"{count} inputs were {what} (first: {first})")
        return out

    def warn_fits(self) -> None:
        for message in self.fit_messages():
            warnings.warn(message, ResizeWarning, stacklevel=2)


def _check_aligner() -> None:
    from .align.landmarks import _import_dlib, landmark_model_path

    _import_dlib()
    landmark_model_path()


def code_batches(codes: torch.Tensor, batch_size: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(start, chunk) over the first axis of ``codes``."""
    for start in range(0, codes.shape[0], batch_size):
        yield start, codes[start:start + batch_size]


class BackgroundWriter:
    """Runs write jobs in one thread, in order, while the caller computes the next batch.

    The first failure is raised in the caller (at the next ``submit`` or at ``close``), and no job
    submitted after it runs. At most ``max_pending`` jobs wait, so memory stays bounded.
    """

    def __init__(self, max_pending: int = 256):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="automod-writer")
        self._pending: deque[Future] = deque()
        self._max_pending = max_pending
        self._failed = threading.Event()
        self.written = 0

    def _run(self, job: Callable[..., Any], args: tuple) -> Any:
        if self._failed.is_set():
            return None
        try:
            result = job(*args)
        except BaseException:
            self._failed.set()
            raise
        self.written += 1
        return result

    def _collect(self, block: bool) -> None:
        while self._pending and (block or self._pending[0].done()):
            self._pending.popleft().result()  # re-raises the job's exception here, in the caller

    def submit(self, job: Callable[..., Any], *args: Any) -> None:
        self._collect(block=False)
        while len(self._pending) >= self._max_pending:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(self._run, job, args))

    def close(self) -> None:
        try:
            self._collect(block=True)
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
            return
        self._failed.set()  # the run failed: write nothing more, wait for the job in progress
        self._pool.shutdown(wait=True, cancel_futures=True)
