"""The FFHQ alignment procedure (Karras et al., ffhq-dataset), and its inverse for paste-back.

Coordinates are pixel-index coordinates (pixel (i, j) has its centre at x=i, y=j), like dlib's
landmarks. ``ffhq_geometry`` is the pure part of the procedure (quad, shrink, crop box, padding),
``render_aligned`` applies it to pixels, ``paste_back`` warps a crop back into the photo.
Quads are 4x2 arrays ordered top-left, bottom-left, bottom-right, top-right of the output square.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw


@dataclass(frozen=True)
class AlignGeometry:
    """Every number the FFHQ procedure derives from the landmarks, before touching pixels."""

    image_size: tuple[int, int]          # (W, H) of the photo
    output_size: int
    transform_size: int
    quad: np.ndarray                     # [4, 2] FFHQ quad in photo coordinates
    qsize: float                         # side of the quad in photo pixels
    shrink: int                          # 1 = no shrink; else the photo is resized by 1/shrink
    shrunk_size: tuple[int, int]         # (w, h) after the shrink (== image_size when shrink == 1)
    border: int                          # crop / pad border, in shrunk pixels
    crop: tuple[int, int, int, int] | None   # box in shrunk coordinates; None = whole image kept
    pad: tuple[int, int, int, int] | None    # (left, top, right, bottom) reflect padding; None = none
    final_quad: np.ndarray               # [4, 2] quad in the shrunk, cropped, padded image

    @property
    def sampled_quad(self) -> np.ndarray:
        """The quad the output really samples, in photo coordinates.

        Equal to ``quad`` without a shrink. With one, FFHQ divides the quad by ``shrink`` while the
        resized photo's pixel centres sit at ``(k + 0.5) * W / w - 0.5``: this maps back exactly.
        """
        q = self.final_quad.copy()
        if self.pad is not None:
            q -= np.array(self.pad[:2], dtype=np.float64)
        if self.crop is not None:
            q += np.array(self.crop[:2], dtype=np.float64)
        if self.shrink > 1:
            scale = np.array(self.image_size, dtype=np.float64) / np.array(self.shrunk_size, dtype=np.float64)
            q = (q + 0.5) * scale - 0.5
        return q


def ffhq_quad(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """FFHQ's oriented square from 68 landmarks: (quad [4, 2], side length)."""
    lm = np.asarray(landmarks, dtype=np.float64)
    if lm.shape != (68, 2):
        raise ValueError(f"expected 68 landmarks [68, 2], got {lm.shape}")
    eye_left = lm[36:42].mean(axis=0)
    eye_right = lm[42:48].mean(axis=0)
    eye_avg = (eye_left + eye_right) * 0.5
    eye_to_eye = eye_right - eye_left
    mouth_avg = (lm[48] + lm[54]) * 0.5
    eye_to_mouth = mouth_avg - eye_avg

    # x: half the side, pointing right; the mean of the eye line and the mouth's perpendicular.
    x = eye_to_eye - np.flipud(eye_to_mouth) * [-1, 1]
    x /= np.hypot(*x)
    x *= max(np.hypot(*eye_to_eye) * 2.0, np.hypot(*eye_to_mouth) * 1.8)
    y = np.flipud(x) * [-1, 1]
    c = eye_avg + eye_to_mouth * 0.1
    quad = np.stack([c - x - y, c - x + y, c + x + y, c + x - y])
    return quad, float(np.hypot(*x) * 2)


def _bounds(quad: np.ndarray) -> tuple[int, int, int, int]:
    return (int(np.floor(quad[:, 0].min())), int(np.floor(quad[:, 1].min())),
            int(np.ceil(quad[:, 0].max())), int(np.ceil(quad[:, 1].max())))


def ffhq_geometry(landmarks: np.ndarray, image_size: tuple[int, int], output_size: int,
                  transform_size: int = 4096, enable_padding: bool = True) -> AlignGeometry:
    """Quad, shrink, crop box and padding of the FFHQ procedure (spec section 5), without pixels."""
    quad, qsize = ffhq_quad(landmarks)
    quad_photo = quad.copy()
    qsize_photo = qsize
    width, height = int(image_size[0]), int(image_size[1])

    # Shrink: keep the quad at most ~4x the output size before the transform.
    shrink = int(np.floor(qsize / output_size * 0.5))
    size = (width, height)
    if shrink > 1:
        size = (int(np.rint(float(width) / shrink)), int(np.rint(float(height) / shrink)))
        quad = quad / shrink
        qsize = qsize / shrink
    else:
        shrink = 1

    # Crop: the quad's bounding box plus a border, clipped to the image.
    border = max(int(np.rint(qsize * 0.1)), 3)
    box = _bounds(quad)
    box = (max(box[0] - border, 0), max(box[1] - border, 0), min(box[2] + border, size[0]), min(box[3] + border, size[1]))
    crop = None
    if box[2] - box[0] < size[0] or box[3] - box[1] < size[1]:
        crop = box
        quad = quad - np.array(box[:2], dtype=np.float64)
        cropped = (box[2] - box[0], box[3] - box[1])
    else:
        cropped = size

    # Pad: only when the quad overflows the crop by more than border - 4; then on all four sides.
    b = _bounds(quad)
    pad = (max(-b[0] + border, 0), max(-b[1] + border, 0), max(b[2] - cropped[0] + border, 0), max(b[3] - cropped[1] + border, 0))
    pad_used = None
    if enable_padding and max(pad) > border - 4:
        minimum = int(np.rint(qsize * 0.3))
        pad_used = tuple(int(max(p, minimum)) for p in pad)
        quad = quad + np.array(pad_used[:2], dtype=np.float64)

    return AlignGeometry(image_size=(width, height), output_size=int(output_size), transform_size=int(transform_size),
                         quad=quad_photo, qsize=qsize_photo, shrink=shrink, shrunk_size=size, border=border,
                         crop=crop, pad=pad_used, final_quad=quad)


def reflect_pad_blend(img: Image.Image, pad: tuple[int, int, int, int], qsize: float) -> Image.Image:
    """FFHQ padding: reflect, then fade towards a blur and towards the median colour near the edges."""
    a = np.asarray(img, dtype=np.float32)
    a = np.pad(a, ((pad[1], pad[3]), (pad[0], pad[2]), (0, 0)), mode="reflect")
    h, w, _ = a.shape
    yy, xx, _ = np.ogrid[:h, :w, :1]
    xx = xx.astype(np.float32)
    yy = yy.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        mask = np.maximum(1.0 - np.minimum(xx / pad[0], (w - 1 - xx) / pad[2]),
                          1.0 - np.minimum(yy / pad[1], (h - 1 - yy) / pad[3]))
    blur = qsize * 0.02
    a += (scipy.ndimage.gaussian_filter(a, [blur, blur, 0]) - a) * np.clip(mask * 3.0 + 1.0, 0.0, 1.0)
    a += (np.median(a, axis=(0, 1)) - a) * np.clip(mask, 0.0, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.rint(a), 0, 255)), "RGB")


def prepare_source(img: Image.Image, g: AlignGeometry) -> Image.Image:
    """Shrink, crop and pad the photo as ``g`` says; the quad transform then reads ``g.final_quad``."""
    if img.size != g.image_size:
        raise ValueError(f"image is {img.size}, geometry was computed for {g.image_size}")
    if g.shrink > 1:
        img = img.resize(g.shrunk_size, Image.LANCZOS)
    if g.crop is not None:
        img = img.crop(g.crop)
    if g.pad is not None:
        img = reflect_pad_blend(img, g.pad, g.qsize / g.shrink)
    return img


def quad_transform(img: Image.Image, quad: np.ndarray, size: int) -> Image.Image:
    """Bilinear quad -> ``size`` square (Pillow's QUAD wants pixel-edge coordinates, hence +0.5)."""
    return img.transform((size, size), Image.QUAD, tuple((quad + 0.5).flatten()), Image.BILINEAR)


def fast_transform_size(g: AlignGeometry, samples_per_pixel: float = 3.0) -> int:
    """A smaller supersampling size that gives nearly the same pixels as ``g.transform_size``.

    The 4096 transform only matters while its grid is coarser than ~3 samples per source pixel
    (bilinear sampling of a finer grid adds nothing) and at least twice the output (so the final
    Lanczos step still does the smoothing). See benchmarks/bench_align.py for its PSNR.
    """
    source_side = g.qsize / g.shrink
    wanted = max(2 * g.output_size, int(np.ceil(samples_per_pixel * source_side)))
    return int(min(g.transform_size, wanted))


def render_aligned(img: Image.Image, g: AlignGeometry, fast: bool = False) -> Image.Image:
    """The FFHQ crop: quad transform at ``transform_size`` (bilinear), Lanczos down to ``output_size``.

    ``fast=True`` transforms at ``fast_transform_size(g)`` instead (up to ~50x fewer pixels).
    """
    size = fast_transform_size(g) if fast else g.transform_size
    src = prepare_source(img.convert("RGB"), g)
    out = quad_transform(src, g.final_quad, size)
    if g.output_size != size:
        out = out.resize((g.output_size, g.output_size), Image.LANCZOS)
    return out


# ---------------------------------------------------------------------------------------------
# Inverse: crop coordinates <-> photo coordinates, the face mask, paste-back.

def crop_to_photo_matrix(quad: np.ndarray, crop_size: int) -> np.ndarray:
    """3x3 affine matrix taking crop pixel-index coordinates (u, v, 1) to photo coordinates.

    Output pixel u samples the quad at fraction (u + 0.5) / crop_size along its top edge; the FFHQ
    quad is a square (a parallelogram after an anisotropic shrink), so the map is affine.
    """
    q = np.asarray(quad, dtype=np.float64)
    ex = (q[3] - q[0]) / crop_size
    ey = (q[1] - q[0]) / crop_size
    origin = q[0] + 0.5 * ex + 0.5 * ey
    return np.array([[ex[0], ey[0], origin[0]], [ex[1], ey[1], origin[1]], [0.0, 0.0, 1.0]])


def photo_to_crop(points: np.ndarray, quad: np.ndarray, crop_size: int) -> np.ndarray:
    """Map [N, 2] photo coordinates into crop coordinates."""
    m = np.linalg.inv(crop_to_photo_matrix(quad, crop_size))
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:2, :2].T + m[:2, 2]


def face_mask(landmarks_crop: np.ndarray, crop_size: int, feather: float) -> np.ndarray:
    """Feathered face mask in crop coordinates, float32 [S, S] in [0, 1].

    1 inside the convex hull of the jaw, the eyebrows and the eyebrows raised to the forehead;
    falls linearly to 0 over ``feather * S`` pixels outside it, and is 0 on the crop's border so
    that nothing outside the aligned square is touched.
    """
    from scipy.spatial import ConvexHull

    lm = np.asarray(landmarks_crop, dtype=np.float64)
    eye_avg = (lm[36:42].mean(axis=0) + lm[42:48].mean(axis=0)) / 2
    mouth_avg = (lm[48] + lm[54]) / 2
    up = (eye_avg - mouth_avg) * 0.8  # the forehead reaches about this far above the brows
    points = np.concatenate([lm[0:17], lm[17:27], lm[17:27] + up])
    hull = points[ConvexHull(points).vertices]
    s = int(crop_size)
    poly = Image.new("L", (s, s), 0)
    ImageDraw.Draw(poly).polygon([(float(x), float(y)) for x, y in hull], fill=1)
    inside = np.asarray(poly, dtype=bool)
    radius = max(float(feather) * s, 1.0)
    outside_distance = scipy.ndimage.distance_transform_edt(~inside) if inside.any() else np.full((s, s), np.inf)
    mask = np.clip(1.0 - outside_distance / radius, 0.0, 1.0)
    mask = mask * mask * (3 - 2 * mask)  # smoothstep: no visible kink at either end of the ramp
    idx = np.arange(s, dtype=np.float64)
    edge = np.minimum(idx, s - 1 - idx)
    border_ramp = np.clip(edge / radius, 0.0, 1.0)
    mask *= np.minimum.outer(border_ramp, border_ramp)
    return mask.astype(np.float32)


def _warp_channels(channels: list[np.ndarray], inverse: np.ndarray, box: tuple[int, int, int, int]) -> list[np.ndarray]:
    """Warp float32 crop-space arrays into the photo's ``box`` with bicubic sampling (0 outside)."""
    left, top, right, bottom = box
    # Pillow's AFFINE maps output pixel-edge coordinates to input pixel-edge coordinates.
    shift_out = np.array([[1.0, 0.0, left - 0.5], [0.0, 1.0, top - 0.5], [0.0, 0.0, 1.0]])
    shift_in = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]])
    m = shift_in @ inverse @ shift_out
    data = (m[0, 0], m[0, 1], m[0, 2], m[1, 0], m[1, 1], m[1, 2])
    size = (right - left, bottom - top)
    return [np.asarray(Image.fromarray(c, "F").transform(size, Image.AFFINE, data, Image.BICUBIC), dtype=np.float32)
            for c in channels]


def paste_back_with_mask(photo: Image.Image, crop: Image.Image, sidecar: dict,
                         feather: float = 0.06) -> tuple[Image.Image, np.ndarray]:
    """``paste_back`` that also returns the blend mask in photo coordinates (float32 [H, W])."""
    photo = photo.convert("RGB")
    crop = crop.convert("RGB")
    expected = tuple(int(v) for v in sidecar["source_size"])
    if photo.size != expected:
        raise ValueError(f"the photo is {photo.size[0]}x{photo.size[1]}, the sidecar was made for "
                         f"{expected[0]}x{expected[1]}")
    if crop.size[0] != crop.size[1]:
        raise ValueError(f"the aligned crop must be square, got {crop.size[0]}x{crop.size[1]}")
    quad = np.asarray(sidecar.get("sampled_quad", sidecar["quad"]), dtype=np.float64)
    side = float(np.hypot(*(quad[3] - quad[0])))

    # Downsampling through a bicubic warp would alias: first bring the crop to the face's size.
    s = crop.size[0]
    if side < s:
        s = max(int(np.ceil(side)), 1)
        crop = crop.resize((s, s), Image.LANCZOS)

    lm_crop = photo_to_crop(np.asarray(sidecar["landmarks"], dtype=np.float64), quad, s)
    mask_crop = face_mask(lm_crop, s, feather)

    width, height = photo.size
    left, top, right, bottom = _bounds(quad)
    box = (max(left - 1, 0), max(top - 1, 0), min(right + 2, width), min(bottom + 2, height))
    out = np.array(photo, dtype=np.uint8)
    full_mask = np.zeros((height, width), dtype=np.float32)
    if box[2] <= box[0] or box[3] <= box[1]:
        return Image.fromarray(out, "RGB"), full_mask  # the quad lies outside the photo

    inverse = np.linalg.inv(crop_to_photo_matrix(quad, s))
    rgb = np.asarray(crop, dtype=np.float32)
    warped = _warp_channels([np.ascontiguousarray(rgb[..., k]) for k in range(3)] + [mask_crop], inverse, box)
    mask = np.clip(warped[3], 0.0, 1.0)
    mask[mask < 1e-6] = 0.0
    colour = np.stack(warped[:3], axis=-1)

    region = out[box[1]:box[3], box[0]:box[2]]
    touched = mask > 0
    base = region.astype(np.float32)
    blended = base + (colour - base) * mask[..., None]
    region[touched] = np.clip(np.floor(blended[touched] + 0.5), 0, 255).astype(np.uint8)
    full_mask[box[1]:box[3], box[0]:box[2]] = mask
    return Image.fromarray(out, "RGB"), full_mask


def paste_back(photo: Image.Image, crop: Image.Image, sidecar: dict, feather: float = 0.06) -> Image.Image:
    """Warp an (edited) aligned crop back into ``photo`` through the inverse alignment transform.

    ``sidecar`` is the dict ``align_faces`` produced for this face of this photo (it needs
    ``source_size``, ``quad`` or ``sampled_quad``, and ``landmarks``). The crop may have any square
    size (the model's resolution). It is blended with a feathered mask over the face (``feather`` is
    the width of the soft edge as a fraction of the crop); pixels outside the mask keep their exact
    values, and the result has the photo's resolution.
    """
    return paste_back_with_mask(photo, crop, sidecar, feather)[0]
