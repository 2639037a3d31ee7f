"""Random camera trajectories after Boracchi & Foi (IEEE TIP 2012), cut at an exposure fraction.

A point moves at constant speed, ``n = 2000`` steps covering ``length`` px in all.  At each step
its velocity ``v`` is perturbed by ``dv`` and renormalised to the step length ``d``:

    dv = jerk + a * (g * (N1 + i N2) - c * x) * d

with ``a`` the **anxiety** (drawn in ``anxiety``), ``g ~ U(0, 10)`` the strength of the random
(Gaussian) acceleration, ``c ~ U(0, 0.7)`` a centripetal pull back towards the start, and
``jerk = 2 v exp(i (pi + U(-0.5, 0.5)))`` (an impulsive shake, a near reversal) with
probability ``a * U(0, 0.2)`` per step, else 0.  The PSF for an exposure fraction
``exposure`` = T in (0, 1] is the part of the trajectory travelled during the first fraction T of
the time (Boracchi-Foi show how blur grows with T).  The shared rasteriser draws it with a
Gaussian of ``psf_sigma`` px; a trajectory too large for the support is shrunk about its centre
of mass, never clipped.

The step recursion is sequential (each step depends on the position), so it runs as a plain
Python loop on complex numbers: a few hundred kernels per second.
"""

from __future__ import annotations

import cmath
import math

import numpy as np

from .base import KernelGenerator, uniform
from .raster import rasterize

STEPS = 2000


class Trajectory(KernelGenerator):
    """Boracchi-Foi random trajectories (``anxiety``) seen during an exposure fraction ``exposure``."""

    name = "trajectory"

    @staticmethod
    def defaults(size: int) -> dict:
        return {"anxiety": [0.0, 0.1], "exposure": 1.0, "length": size * 60.0 / 64.0, "psf_sigma": size / 100.0}

    def _configure(self) -> None:
        self.anxiety = self._span("anxiety", 0.0, 1.0)
        self.exposure = self._number("exposure", 0.0, 1.0, open_low=True)
        self.length = self._number("length", 0.0, 1e4)
        self.psf_sigma = self._number("psf_sigma", 0.0, 1e3)

    def _path(self, rng: np.random.Generator) -> np.ndarray:
        """``(STEPS, 2)`` positions (rows, cols) of the whole trajectory, starting at 0."""
        anxiety = uniform(rng, self.anxiety)
        centripetal, gaussian, jerk_rate = rng.uniform(0.0, 0.7), rng.uniform(0.0, 10.0), rng.uniform(0.0, 0.2)
        step = self.length / (STEPS - 1)
        jerks = (rng.random(STEPS - 1) < jerk_rate * anxiety).tolist()
        turns = rng.uniform(-0.5, 0.5, STEPS - 1).tolist()
        kicks = (rng.standard_normal(STEPS - 1) + 1j * rng.standard_normal(STEPS - 1)).tolist()
        v = step * cmath.exp(1j * rng.uniform(0.0, 2.0 * math.pi))
        x, xs = 0j, [0j]
        for jerk, turn, kick in zip(jerks, turns, kicks):
            dv = anxiety * (gaussian * kick - centripetal * x) * step
            if jerk:
                dv += 2.0 * v * cmath.exp(1j * (math.pi + turn))
            v += dv
            if v:
                v *= step / abs(v)
            x += v
            xs.append(x)
        path = np.array(xs)
        return np.stack([path.imag, path.real], axis=1)

    def _kernel(self, rng: np.random.Generator) -> np.ndarray:
        path = self._path(rng)
        end = self.exposure * (STEPS - 1)
        whole, part = int(end), end - int(end)
        seen, durations = path[: whole + 1], np.ones(whole)
        if part > 0:  # the last, partial step
            seen = np.concatenate([seen, [path[whole] + part * (path[whole + 1] - path[whole])]])
            durations = np.append(durations, part)
        return rasterize(seen, self.size, durations=durations, psf_sigma=self.psf_sigma)
