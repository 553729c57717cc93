"""dlib's frontal face detector and 68-point landmark predictor.

The predictor file ships in the ``face-recognition-models`` wheel. Its ``__init__`` imports the
removed ``pkg_resources``, so the package is located with ``importlib.util.find_spec`` (which does not
execute it) and the file is read from its ``models/`` folder directly.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import UserError

MODELS_PACKAGE = "face_recognition_models"
MODELS_DISTRIBUTION = "face-recognition-models"
LANDMARK_MODEL_FILE = "shape_predictor_68_face_landmarks.dat"


@dataclass(frozen=True)
class Detection:
    """One detected face: box (left, top, right, bottom), detector score, 68 (x, y) landmarks."""

    box: tuple[int, int, int, int]
    score: float
    landmarks: np.ndarray  # float64 [68, 2], pixel-index coordinates


def landmark_model_path() -> Path:
    """Path of the 68-point predictor inside the installed ``face-recognition-models`` package."""
    hint = f"install the package '{MODELS_DISTRIBUTION}' (pip install {MODELS_DISTRIBUTION})"
    spec = importlib.util.find_spec(MODELS_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the face landmark model is missing: {hint}")
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "models" / LANDMARK_MODEL_FILE
        if path.is_file():
            return path
    raise UserError(f"the face landmark model {LANDMARK_MODEL_FILE} is missing: {hint}")


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise UserError("dlib is not installed: install the package 'dlib-bin' (pip install dlib-bin)") from None
    return dlib


class FaceDetector:
    """HOG face detector + 68-point shape predictor (about 100 MB; load once per process)."""

    def __init__(self, model_path: str | Path | None = None):
        dlib = _import_dlib()
        path = Path(model_path) if model_path is not None else landmark_model_path()
        if not path.is_file():
            raise UserError(f"the face landmark model is missing: install the package '{MODELS_DISTRIBUTION}'", path)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))
        self._dlib = dlib

    def detect(self, rgb: np.ndarray, upsample: int = 1, min_score: float = 0.0) -> list[tuple[tuple[int, int, int, int], float]]:
        """Face boxes and scores with score >= ``min_score``; ``upsample`` doubles the image that many times."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        # adjust_threshold lowers/raises dlib's own cut (0); below-zero scores are returned when asked for.
        rects, scores, _ = self._detector.run(rgb, int(upsample), float(min(min_score, 0.0)))
        out = []
        for r, s in zip(rects, scores):
            if s >= min_score:
                out.append(((r.left(), r.top(), r.right(), r.bottom()), float(s)))
        return out

    def landmarks(self, rgb: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
        """68 landmarks [68, 2] (float64) for the face in ``box``."""
        rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
        shape = self._predictor(rgb, self._dlib.rectangle(*[int(v) for v in box]))
        return np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float64)

    def __call__(self, rgb: np.ndarray, upsample: int = 1, min_score: float = 0.0) -> list[Detection]:
        return [Detection(box, score, self.landmarks(rgb, box)) for box, score in self.detect(rgb, upsample, min_score)]


_SHARED: dict[str, FaceDetector] = {}


def shared_detector() -> FaceDetector:
    """One detector per process (worker processes each load their own)."""
    if "detector" not in _SHARED:
        _SHARED["detector"] = FaceDetector()
    return _SHARED["detector"]
