"""A kernel from light streaks: a small lamp the camera clipped has drawn the kernel itself.

A point light blurred by the camera is ``E·k`` around the lamp, on top of the scene: where ``E·k``
exceeds the sensor's range the streak is clipped flat, around it the kernel's tail shows unclipped.
So an isolated clipped component that fits in the kernel's box, with its unclipped halo, is the
kernel up to scale with its top cut off: the right support and the right path, the wrong weights
along it. Night photographs are full of them, and there the blind estimate fails without them
(docs/results.md, "Fourteen real photographs"). :func:`streak_kernel` averages every such streak of
an image (each minus the box's median, the faint pixels and the pieces not joined to the clipped
core dropped, normalised and centred by its centre of mass), the ``streak`` kernel start of Fast EM
(docs/design.md §15). Components are found on the host, once per run, before sampling.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from fdem.kernel_ops import normalize_kernel, recenter

STREAK_LEVEL = 0.98  # a pixel at or above this in any channel is clipped (when no saturation level is set)
FAINT = 0.1  # pixels of a streak below this share of its maximum are the scene's, not the lamp's
EDGE = 4  # a clipped component must leave this many pixels of the kernel's box free on each side (its halo)
_EIGHT = np.ones((3, 3), dtype=int)


def streak_kernel(y: Tensor, kernel_size: int, level: float = STREAK_LEVEL) -> tuple[Tensor, Tensor]:
    """``(kernels (B, 1, k, k), found (B,))``: per image of ``y (B, C, H, W)`` in ``[0, 1]``, the mean of its
    light streaks as a kernel, and whether it had any (else its kernel is a zero array)."""
    grey = y.mean(dim=1).double().cpu().numpy()
    clipped = (y >= level).any(dim=1).cpu().numpy()
    kernels = torch.zeros(y.shape[0], 1, kernel_size, kernel_size, dtype=torch.float64)
    found = torch.zeros(y.shape[0], dtype=torch.bool)
    for b in range(y.shape[0]):
        streaks = [torch.from_numpy(s) for s in _streaks(grey[b], clipped[b], kernel_size)]
        if streaks:
            centred = recenter(normalize_kernel(torch.stack(streaks)[:, None]))
            kernels[b] = normalize_kernel(centred.mean(dim=0, keepdim=True))[0]
            found[b] = True
    return kernels.to(y), found.to(y.device)


def _streaks(grey: np.ndarray, clipped: np.ndarray, size: int) -> list[np.ndarray]:
    """The ``size × size`` boxes of every isolated clipped component that fits, its halo kept."""
    labels, count = ndimage.label(clipped, structure=_EIGHT)
    half, out = size // 2, []
    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if max(s.stop - s.start for s in box) > size - 2 * EDGE:
            continue
        r, c = (int(round(v)) for v in ndimage.center_of_mass(labels == index))
        if r < half or c < half or r + half >= grey.shape[0] or c + half >= grey.shape[1]:
            continue
        window = (slice(r - half, r + half + 1), slice(c - half, c + half + 1))
        if not np.isin(labels[window], (0, index)).all():  # another lamp's light in the box
            continue
        patch = np.clip(grey[window] - np.median(grey[window]), 0, None)
        patch[patch < FAINT * patch.max()] = 0
        pieces, _ = ndimage.label(patch > 0, structure=_EIGHT)
        core = np.unique(pieces[labels[window] == index])
        out.append(np.where(np.isin(pieces, core[core > 0]), patch, 0.0))
    return out
