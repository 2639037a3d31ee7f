"""The shared rasteriser: a camera path (a polyline in pixels) -> a centred, normalised kernel.

Steps, each chosen so that the kernel's centre of mass lands on ``(k//2, k//2)`` exactly, with no
interpolation after the fact:

1. ``densify``: points at the midpoints of equal sub-steps of every segment (at most ``step`` px
   apart), each weighted by the time spent there.  The weighted mean of those points is the
   centre of mass of the continuous path.
2. ``fit``: translate the points so that their weighted mean sits on the kernel centre.  If the
   path (plus the Gaussian's radius) does not fit in the ``k x k`` support, it is **shrunk about
   its mean** by the smallest factor that makes it fit: the shape is kept and nothing is clipped.
3. ``splat``: bilinear splatting of the points on the pixel grid (anti-aliased, sub-pixel); it
   preserves the centre of mass exactly.  (Supersampling then box-downsampling would not: a fine
   pixel's mass moves to its coarse pixel's centre, up to half a fine pixel.)
4. ``gaussian_blur``: an optional symmetric Gaussian (the optical PSF width), truncated at a radius
   that the fit step kept free, so no mass leaves the support and the centre does not move.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import convolve1d


def densify(vertices: np.ndarray, durations: np.ndarray | None, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(P, 2)`` and weights ``(P,)`` sampling a polyline ``(V, 2)`` at most ``step`` apart.

    Segment ``j`` is traversed at constant speed in time ``durations[j]`` (all equal by default:
    vertices sampled uniformly in time).  A single vertex is a point of weight 1.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    if len(vertices) < 2:
        return vertices[:1].copy(), np.ones(1)
    seg = np.diff(vertices, axis=0)
    durations = np.ones(len(seg)) if durations is None else np.asarray(durations, dtype=np.float64)
    counts = np.maximum(1, np.ceil(np.hypot(seg[:, 0], seg[:, 1]) / step)).astype(np.int64)
    owner = np.repeat(np.arange(len(seg)), counts)
    within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    t = (within + 0.5) / counts[owner]
    points = vertices[owner] + t[:, None] * seg[owner]
    return points, (durations / counts)[owner]


def blur_radius(size: int, psf_sigma: float) -> int:
    """Truncation radius of the PSF Gaussian: 3 sigma rounded, at most what the support leaves around the centre."""
    return min(int(np.floor(3.0 * psf_sigma + 0.5)), (size - 1) // 2)


def fit(points: np.ndarray, weights: np.ndarray, size: int, margin: int) -> np.ndarray:
    """Move the weighted mean to ``(size//2, size//2)``; shrink about it until inside ``[margin, size-1-margin]``."""
    centre = size // 2
    offsets = points - (weights[:, None] * points).sum(axis=0) / weights.sum()
    room_low, room_high = centre - margin, size - 1 - margin - centre
    scale = 1.0
    low, high = -offsets.min(), offsets.max()
    if low > room_low:
        scale = room_low / low
    if high > room_high:
        scale = min(scale, room_high / high)
    return np.clip(centre + scale * offsets, margin, size - 1 - margin)


def splat(points: np.ndarray, weights: np.ndarray, size: int) -> np.ndarray:
    """Bilinear splatting of weighted points (inside ``[0, size-1]``) on a ``size x size`` grid."""
    i0 = np.floor(points).astype(np.int64)
    frac = points - i0
    i1 = np.minimum(i0 + 1, size - 1)  # only ever reached with zero weight
    (r0, c0), (r1, c1), (fr, fc) = i0.T, i1.T, frac.T
    index = np.concatenate([r0 * size + c0, r0 * size + c1, r1 * size + c0, r1 * size + c1])
    mass = np.concatenate([(1 - fr) * (1 - fc), (1 - fr) * fc, fr * (1 - fc), fr * fc]) * np.tile(weights, 4)
    return np.bincount(index, weights=mass, minlength=size * size).reshape(size, size)


def gaussian_blur(image: np.ndarray, psf_sigma: float) -> np.ndarray:
    """Separable Gaussian blur, truncated at ``blur_radius``, zero outside the support.

    Mass and centre of mass are kept for content at least ``blur_radius`` from the border.
    """
    radius = blur_radius(image.shape[-1], psf_sigma)
    if radius == 0:
        return image
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / psf_sigma) ** 2)
    taps /= taps.sum()
    image = convolve1d(image, taps, axis=0, mode="constant")
    return convolve1d(image, taps, axis=1, mode="constant")


def normalize(kernel: np.ndarray) -> np.ndarray:
    """Clip at 0 and scale to sum 1."""
    kernel = np.maximum(kernel, 0.0)
    return kernel / kernel.sum()


def rasterize(
    vertices: np.ndarray,
    size: int,
    *,
    durations: np.ndarray | None = None,
    psf_sigma: float = 0.0,
) -> np.ndarray:
    """A ``(size, size)`` float64 kernel (sum 1, centre of mass at ``size//2``) of a polyline in pixels."""
    points, weights = densify(vertices, durations, step=0.25)
    points = fit(points, weights, size, margin=blur_radius(size, psf_sigma))
    return normalize(gaussian_blur(splat(points, weights, size), psf_sigma))
