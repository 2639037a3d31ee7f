"""Isotropic and anisotropic Gaussian blur kernels (defocus / atmospheric stand-ins).

Per kernel: standard deviations ``s1`` drawn uniformly in ``sigma`` and, if ``anisotropic``,
``s2`` drawn in ``sigma2`` (default: the same range as ``sigma``; otherwise ``s2 = s1``), the
first axis at ``angle`` degrees (drawn uniformly, counter-clockwise from the column axis).  A
single number fixes any of them.

The density is sampled at the pixel centres within a window symmetric about ``(k//2, k//2)``
(radius ``(k-1)//2``), so the centre of mass is exactly the centre.  Sigmas whose 3-sigma extent
would not fit in that window are scaled down together (the aspect ratio is kept), never clipped.
Analytic kernels need no path, so only the rasteriser's ``normalize`` is shared.
"""

from __future__ import annotations

import math

import numpy as np

from .base import KernelGenerator, uniform
from .raster import normalize


class Gaussian(KernelGenerator):
    """Gaussian kernels with random (or fixed) sigmas and orientation."""

    name = "gaussian"

    @staticmethod
    def defaults(size: int) -> dict:
        scale = size / 33.0
        return {
            "sigma": [0.5 * scale, 4.0 * scale],
            "sigma2": None,
            "anisotropic": True,
            "angle": [0.0, 180.0],
        }

    def _configure(self) -> None:
        self.sigma = self._span("sigma", 0.0, 1e3, open_low=True)
        self.sigma2 = self.sigma if self._params["sigma2"] is None else self._span("sigma2", 0.0, 1e3, open_low=True)
        self.anisotropic = self._flag("anisotropic")
        self.angle = self._span("angle", -360.0, 360.0)

    def _kernel(self, rng: np.random.Generator) -> np.ndarray:
        s1, s2, theta = uniform(rng, self.sigma), uniform(rng, self.sigma2), math.radians(uniform(rng, self.angle))
        if not self.anisotropic:
            s2 = s1
        radius = (self.size - 1) // 2
        shrink = min(1.0, radius / (3.0 * max(s1, s2)))
        s1, s2 = s1 * shrink, s2 * shrink
        offsets = np.arange(-radius, radius + 1, dtype=np.float64)
        rows, cols = np.meshgrid(offsets, offsets, indexing="ij")
        along = cols * math.cos(theta) - rows * math.sin(theta)  # rows grow downwards: flip for counter-clockwise
        across = cols * math.sin(theta) + rows * math.cos(theta)
        window = np.exp(-0.5 * ((along / s1) ** 2 + (across / s2) ** 2))
        kernel = np.zeros((self.size, self.size))
        centre = self.size // 2
        kernel[centre - radius : centre + radius + 1, centre - radius : centre + radius + 1] = window
        return normalize(kernel)
