"""A PNG contact sheet of kernels, for looking at a bank."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fdem.errors import InputError

from fdem.io_utils import atomic_path

GAP = 2  # grey pixels between and around the cells


def preview_scale(size: int) -> int:
    """Default enlargement: cells of about 128 px, at least 1x."""
    return max(1, 128 // size)


def save_preview(kernels, path, ncol: int = 8, scale: int | None = None) -> None:
    """Write an 8-bit grey grid of ``kernels`` (``(n, 1, k, k)``, ``(n, k, k)`` or ``(k, k)``) to ``path``.

    Each kernel is scaled to its own maximum (white) and enlarged ``scale`` times by pixel
    replication (default ``preview_scale(k)``); ``ncol`` cells per row, separated by a grey gap.
    The image is ``cols * k * scale + (cols + 1) * GAP`` wide, ``cols = min(n, ncol)``, and
    ``rows * k * scale + (rows + 1) * GAP`` high, ``rows = ceil(n / ncol)``.
    """
    if isinstance(kernels, torch.Tensor):
        kernels = kernels.detach().cpu().numpy()
    array = np.asarray(kernels, dtype=np.float64)
    if array.ndim < 2 or array.shape[-1] != array.shape[-2] or array.size == 0:
        raise InputError(f"{path}: preview needs square kernels (n, 1, k, k), got shape {array.shape}")
    array = array.reshape(-1, *array.shape[-2:])
    if ncol < 1:
        raise InputError(f"{path}: ncol must be >= 1, got {ncol}")
    n, size = array.shape[0], array.shape[-1]
    scale = preview_scale(size) if scale is None else scale
    cell = size * scale
    cols, rows = min(n, ncol), math.ceil(n / ncol)
    sheet = np.full((rows * cell + (rows + 1) * GAP, cols * cell + (cols + 1) * GAP), 128, dtype=np.uint8)
    peaks = np.maximum(array.max(axis=(1, 2), keepdims=True), 1e-30)
    cells = np.clip(np.round(255.0 * np.maximum(array, 0.0) / peaks), 0, 255).astype(np.uint8)
    for i, img in enumerate(cells):
        top, left = GAP + (i // ncol) * (cell + GAP), GAP + (i % ncol) * (cell + GAP)
        sheet[top : top + cell, left : left + cell] = np.kron(img, np.ones((scale, scale), dtype=np.uint8))
    with atomic_path(Path(path)) as tmp:
        Image.fromarray(sheet, mode="L").save(tmp, format="PNG")
