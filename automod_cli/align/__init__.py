"""FFHQ face alignment for real photos, and pasting edited crops back into them.

    from automod_cli.align import align_faces, paste_back
    faces = align_faces("photo.jpg", 256)              # [AlignedFace]; InputError if no face
    crop, sidecar = faces[0].image, faces[0].sidecar   # PIL RGB 256x256, JSON-able dict
    out = paste_back(open_image("photo.jpg"), edited_crop, sidecar)   # photo-sized PIL RGB
"""

from .ffhq import AlignGeometry, fast_transform_size, ffhq_geometry, ffhq_quad, paste_back, paste_back_with_mask, render_aligned
from .landmarks import FaceDetector, landmark_model_path
from .pipeline import AlignedFace, AlignOptions, PhotoResult, align_faces, align_file, align_files

__all__ = [
    "AlignGeometry", "AlignOptions", "fast_transform_size", "AlignedFace", "FaceDetector", "PhotoResult", "align_faces", "align_file",
    "align_files", "ffhq_geometry", "ffhq_quad", "landmark_model_path", "paste_back", "paste_back_with_mask",
    "render_aligned",
]
