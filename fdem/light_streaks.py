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


def streak_kernel(y: Tensor, kernel_size: int, level: float | None = None) -> tuple[Tensor, Tensor]:
    """``(kernels (B, 1, k, k), found (B,))``: per image of ``y (B, C, H, W)`` in ``[0, 1]``, the mean of its
    light streaks as a kernel, and whether it had any (else its kernel is a zero array); ``level`` the
    saturation level (None: :data:`STREAK_LEVEL`)."""
    grey = y.mean(dim=1).double().cpu().numpy()
    clipped = (y >= (level or STREAK_LEVEL)).any(dim=1).cpu().numpy()
    kernels = torch.zeros(y.shape[0], 1, kernel_size, kernel_size, dtype=torch.float64)
    found = torch.zeros(y.shape[0], dtype=torch.bool)
    for b in range(y.shape[0]):
        streaks = [torch.from_numpy(s) for s in _streaks(grey[b], clipped[b], kernel_size)]
        if streaks:
            centred = recenter(normalize_kernel(torch.stack(streaks)[:, None]))
            kernels[b] = normalize_kernel(centred.mean(dim=0, keepdim=True))[0]
            found[b] = True
    return kernels.to(y), found.to(y.device)


def lamp_boxes(clipped: np.ndarray, size: int) -> tuple[np.ndarray, list[tuple[int, tuple[slice, slice], bool, bool]]]:
    """The clipped components of a ``(H, W)`` mask (their labels) and, for each, ``(label, box, alone, inside)``:
    its ``size × size`` box around its centre of mass (cut to the image), whether it is a lamp alone in that
    box (it fits with :data:`EDGE` px to spare and no other component is there) and whether the box lies
    inside the image."""
    labels, _ = ndimage.label(clipped, structure=_EIGHT)
    half, boxes = size // 2, []
    for index, extent in enumerate(ndimage.find_objects(labels), start=1):
        r, c = (int(round(v)) for v in ndimage.center_of_mass(labels == index))
        box = (slice(max(r - half, 0), r + half + 1), slice(max(c - half, 0), c + half + 1))
        inside = half <= r < clipped.shape[0] - half and half <= c < clipped.shape[1] - half
        alone = max(s.stop - s.start for s in extent) <= size - 2 * EDGE and bool(np.isin(labels[box], (0, index)).all())
        boxes.append((index, box, alone, inside))
    return labels, boxes


def _streaks(grey: np.ndarray, clipped: np.ndarray, size: int) -> list[np.ndarray]:
    """The ``size × size`` boxes of every lamp alone in a box inside the image (:func:`lamp_boxes`), its halo kept."""
    labels, boxes = lamp_boxes(clipped, size)
    out = []
    for index, box, alone, inside in boxes:
        if not (alone and inside):
            continue
        patch = np.clip(grey[box] - np.median(grey[box]), 0, None)
        patch[patch < FAINT * patch.max()] = 0
        pieces, _ = ndimage.label(patch > 0, structure=_EIGHT)
        core = np.unique(pieces[labels[box] == index])
        out.append(np.where(np.isin(pieces, core[core > 0]), patch, 0.0))
    return out
