"""Evaluation metrics with the published protocols: FID, reconstruction LPIPS, perceptual path length.

Network weights come from ``weights`` (explicit folder, environment variable, torch hub cache, or a
checked download); every result is a JSON record (``results``) naming its protocol and hashes.
"""

from .fid import FeatureExtractor, FIDStats, fid_from_stats, frechet_distance, load_stats, set_stats
from .lpips import LPIPSDistance, face_crop
from .ppl import perceptual_path_length, percentile_filter
from .weights import MissingWeightsError, resolve as resolve_weights

__all__ = ["FIDStats", "FeatureExtractor", "LPIPSDistance", "MissingWeightsError", "face_crop",
           "fid_from_stats", "frechet_distance", "load_stats", "perceptual_path_length", "percentile_filter",
           "resolve_weights", "set_stats"]
