"""Random-path motion kernels with an ``intensity`` in [0, 1], the kind DPS / Blind-DPS test on.

In the spirit of the popular ``motionblur`` ``Kernel(size, intensity)`` generator: a jagged
polyline traversed at constant speed, whose length and irregularity grow with ``intensity``,
drawn with a soft, fairly thick stroke.  Per kernel:

- total length ``L = length * size * (0.2 + 0.8 * intensity) * U(0.5, 1)`` px;
- ``2 .. 2 + round(10 * intensity)`` segments (uniform count), lengths proportional to U(0.2, 1);
- a uniform initial heading; each joint turns by ``U(-m, m)``, with the per-kernel maximum turn
  ``m = U(0, pi * intensity)``: intensity 0 gives short straight strokes, 1 long zigzags;
- the stroke: the shared rasteriser's Gaussian of ``psf_sigma`` px (default ``size / 40``).

A path too large for the support is shrunk about its centre of mass, never clipped.
"""

from __future__ import annotations

import math

import numpy as np

from .base import KernelGenerator
from .raster import rasterize


class Motion(KernelGenerator):
    """Jagged random-path kernels whose length and irregularity grow with ``intensity``."""

    name = "motion"

    @staticmethod
    def defaults(size: int) -> dict:
        return {"intensity": 0.5, "length": 1.0, "psf_sigma": size / 40.0}

    def _configure(self) -> None:
        self.intensity = self._number("intensity", 0.0, 1.0)
        self.length = self._number("length", 0.0, 10.0)
        self.psf_sigma = self._number("psf_sigma", 0.0, 1e3)

    def _kernel(self, rng: np.random.Generator) -> np.ndarray:
        total = self.length * self.size * (0.2 + 0.8 * self.intensity) * rng.uniform(0.5, 1.0)
        segments = int(rng.integers(2, 3 + round(10 * self.intensity)))
        lengths = rng.uniform(0.2, 1.0, segments)
        lengths *= total / lengths.sum()
        max_turn = rng.uniform(0.0, math.pi * self.intensity)
        headings = rng.uniform(0.0, 2.0 * math.pi) + np.cumsum(rng.uniform(-max_turn, max_turn, segments))
        steps = lengths[:, None] * np.stack([np.sin(headings), np.cos(headings)], axis=1)
        vertices = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
        return rasterize(vertices, self.size, durations=lengths, psf_sigma=self.psf_sigma)
