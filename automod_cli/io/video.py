"""Frames to an animation: GIF and WebP with Pillow, MP4 (H.264) with the optional ``imageio-ffmpeg``.

``VideoWriter`` takes frames one batch at a time. MP4 frames stream to ffmpeg as they come; GIF and
WebP frames are kept (as 8-bit images) until the file is written at ``close``. Every file is written
atomically.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import UserError
from .atomic import atomic_path
from .images import to_uint8

VIDEO_SUFFIXES = (".gif", ".webp", ".mp4")
MP4_HINT = "MP4 needs the optional package imageio-ffmpeg: pip install 'automod-cli[video]' (or write .gif or .webp)"


def _imageio_ffmpeg():
    try:
        import imageio_ffmpeg
    except ImportError:
        return None
    return imageio_ffmpeg


def check_video_path(path: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, an unknown suffix, a missing MP4 encoder or an existing file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in VIDEO_SUFFIXES:
        raise UserError(f"a video needs the suffix .gif, .webp or .mp4 (got '{path.suffix or 'none'}')", path)
    if suffix == ".mp4" and _imageio_ffmpeg() is None:
        raise UserError(MP4_HINT, path)
    if path.is_dir():
        raise UserError("is a folder; give a file name", path)
    if not overwrite and path.exists():
        raise UserError("exists already (use --overwrite to replace it)", path)
    return path


class VideoWriter:
    """``add(images)`` batches of [B, 3, H, W] in [-1, 1]; ``close()`` finishes the file."""

    def __init__(self, path: str | Path, fps: float = 24.0, loop: bool = True, overwrite: bool = False):
        self.path = check_video_path(path, overwrite)
        if not fps > 0:
            raise UserError(f"--fps must be positive, got {fps}")
        self.fps, self.loop, self.overwrite = float(fps), loop, overwrite
        self.frames: list[Image.Image] = []
        self.count = 0
        self._stack = contextlib.ExitStack()
        self._mp4 = None
        if self.path.suffix.lower() == ".mp4":
            self._tmp = self._stack.enter_context(atomic_path(self.path, overwrite=overwrite))

    def _start_mp4(self, width: int, height: int) -> None:
        ffmpeg = _imageio_ffmpeg()
        # yuv420p: the pixel format every player takes; ffmpeg's own log stays quiet unless it fails.
        self._mp4 = ffmpeg.write_frames(str(self._tmp), (width, height), fps=self.fps, codec="libx264",
                                        pix_fmt_out="yuv420p", quality=8, macro_block_size=1,
                                        ffmpeg_log_level="error")
        self._mp4.send(None)

    def add(self, images: torch.Tensor) -> None:
        frames = to_uint8(images.cpu()).permute(0, 2, 3, 1).numpy()
        for frame in frames:
            frame = np.ascontiguousarray(frame)
            if self.path.suffix.lower() == ".mp4":
                if self._mp4 is None:
                    self._start_mp4(frame.shape[1], frame.shape[0])
                self._mp4.send(frame)
            else:
                self.frames.append(Image.fromarray(frame, "RGB"))
            self.count += 1

    def close(self) -> Path:
        if self.count == 0:
            raise UserError("no frames to write", self.path)
        suffix = self.path.suffix.lower()
        if suffix == ".mp4":
            self._mp4.close()
            self._stack.close()  # fsync and rename into place
            return self.path
        duration = int(round(1000.0 / self.fps))
        options: dict = {"save_all": True, "append_images": self.frames[1:], "duration": duration}
        if suffix == ".gif":
            options.update(disposal=2, optimize=False)
            if self.loop:
                options["loop"] = 0  # no loop key: GIF players show it once
        else:
            options.update(loop=0 if self.loop else 1, lossless=True)
        with atomic_path(self.path, overwrite=self.overwrite) as tmp:
            self.frames[0].save(tmp, format="GIF" if suffix == ".gif" else "WEBP", **options)
        return self.path

    def abort(self) -> None:
        """Stop without writing anything (the temporary MP4 is removed)."""
        if self._mp4 is not None:
            with contextlib.suppress(Exception):
                self._mp4.close()
        with contextlib.suppress(Exception):
            self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()

