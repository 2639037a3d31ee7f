"""Kernel fields: camera shake *with* roll, seen at every cell of a grid (blur that varies across the frame).

The camera-shake model (:mod:`.camera_shake`) rotates the camera about two axes and ignores the third,
roll about the optical axis, because roll makes the blur vary across the image. Here it is put back: the
same exposure's pitch/yaw path ``p(t)`` (px), and a roll angle ``ρ(t)`` (a drift process of the same
kind, mean-reverting, smooth) that moves an image point at ``q`` from the frame's centre by
``ρ(t)·(−q_col, q_row)`` (small angles). The kernel at ``q`` draws ``p(t) + ρ(t)·J q`` with the shared
rasteriser, centred on its own centre of mass (the field blurs, it does not warp the image). The roll's
range over the exposure is drawn so that the frame's corner moves ``roll_px`` pixels (a span): the
kernels at opposite corners differ by up to about twice that, the centre's is the plain camera shake.

A field of ``grid = (G, H)`` cells on a ``height × width`` frame is evaluated at the cells' centres,
``(M = G·H, k, k)``; field ``i`` depends on ``(seed, i)`` only, and its translation part is the
camera-shake kernel ``i`` of the same seed (the roll is drawn after it).
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from fdem.errors import InputError
from fdem.kernel_field import cell_centres, parse_grid

from .camera_shake import DRIFT_Q, CameraShake, oscillator
from .base import uniform
from .raster import rasterize

ROLL_PX = (6.0, 16.0)  # default span of the frame corner's travel under roll (px)


class CameraShakeField:
    """Seeded kernel fields of ``size × size`` kernels on a ``grid`` over a ``frame`` (height, width) in px;
    ``roll_px`` the span of the corner's travel, ``shake`` the camera-shake parameters (:class:`CameraShake`)."""

    def __init__(self, size: int, grid, frame: tuple[int, int], roll_px=ROLL_PX, **shake):
        self.shake = CameraShake(size, **shake)
        self.size, self.grid = self.shake.size, parse_grid(grid, "grid")
        if len(frame) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1 for v in frame):
            raise InputError(f"camera-shake field: frame must be (height, width) in px, got {frame!r}")
        roll = tuple(roll_px) if isinstance(roll_px, (list, tuple)) else (roll_px, roll_px)
        if len(roll) != 2 or not 0 <= roll[0] <= roll[1] <= 10 * max(frame):
            raise InputError(f"camera-shake field: roll_px must be a span 0 <= low <= high, got {roll_px!r}")
        self.frame, self.roll_px = (int(frame[0]), int(frame[1])), roll
        centre = ((self.frame[0] - 1) / 2, (self.frame[1] - 1) / 2)
        self.offsets = [(r - 0.5 - centre[0], c - 0.5 - centre[1]) for r, c in cell_centres(self.frame, self.grid)]

    @property
    def cells(self) -> int:
        return self.grid[0] * self.grid[1]

    def params(self) -> dict:
        """What makes the fields: JSON-serialisable."""
        return {"grid": list(self.grid), "frame": list(self.frame), "roll_px": list(self.roll_px), **self.shake.params()}

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` fields, float32 ``(n, M, size, size)``, each kernel sum 1; field ``i`` depends on ``(seed, i)`` only."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise InputError(f"camera-shake field: the number of fields must be an integer >= 0, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise InputError(f"camera-shake field: seed must be an integer >= 0, got {seed!r}")
        out = np.empty((int(n), self.cells, self.size, self.size), dtype=np.float32)
        for i in range(int(n)):
            out[i] = self._field(np.random.default_rng([int(seed), i]))
        return torch.from_numpy(out)

    def _field(self, rng: np.random.Generator) -> np.ndarray:
        path, dt, drift_hz = self.shake.path(rng)
        roll = oscillator(rng, len(path), dt, drift_hz, DRIFT_Q, 1.0)[0]
        roll = roll - roll.mean()
        corner = math.hypot(self.frame[0] / 2, self.frame[1] / 2)
        roll *= uniform(rng, self.roll_px) / corner / max(np.ptp(roll), 1e-12)  # radians: the corner travels roll_px
        return np.stack([rasterize(path + roll[:, None] * np.array([-dc, dr]), self.size, psf_sigma=self.shake.psf_sigma)
                         for dr, dc in self.offsets])


def save_fields(path, fields: torch.Tensor, grid: tuple[int, int], params: dict, seed: int) -> None:
    """Write ``fields (n, M, k, k)`` as ``.npz``: ``fields`` ``(n, G, H, k, k)`` float32, and the generator's
    parameters and seed as JSON (``meta``); atomically."""
    import json

    from fdem.io_utils import atomic_path

    array = fields.reshape(fields.shape[0], *grid, *fields.shape[-2:]).numpy().astype(np.float32)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.savez(handle, fields=array, meta=np.array(json.dumps({"seed": seed, **params})))


def load_fields(path) -> torch.Tensor:
    """Kernel fields from ``.npz`` (``fields``, as :func:`save_fields` writes) or ``.npy`` (``(G, H, k, k)``, one
    field as ``fdem deblur`` writes it, or ``(n, G, H, k, k)``): float32 ``(n, G, H, k, k)``, each kernel sum 1."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such kernel-field file")
    try:
        content = np.load(path, allow_pickle=False)
        array = content["fields"] if isinstance(content, np.lib.npyio.NpzFile) else content
    except (KeyError, OSError, ValueError) as err:
        raise InputError(f"{path}: not a kernel-field file (.npz with 'fields', or .npy of (G, H, k, k)): {err}") from err
    array = array[None] if array.ndim == 4 else array
    if array.ndim != 5 or array.shape[-1] != array.shape[-2] or not np.isfinite(array).all() or (array < 0).any():
        raise InputError(f"{path}: a kernel field must be finite, non-negative, (G, H, k, k) or (n, G, H, k, k), got {array.shape}")
    sums = array.sum(axis=(-2, -1), keepdims=True)
    if (sums <= 0).any():
        raise InputError(f"{path}: a kernel of the field is all zero")
    return torch.from_numpy((array / sums).astype(np.float32))
