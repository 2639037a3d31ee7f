"""Hand-held camera shake, after the physiological model of Gavant et al. (IEEE SENSORS 2011).

The camera rotates about two axes (pitch moves the image along rows, yaw along columns; roll,
which would make the blur vary across the image, is ignored).  Per axis, independently, the
rotation angle is the sum of two stationary Gaussian processes, each white noise through a
second-order filter (a damped oscillator), so that the path is smooth (no Brownian jaggedness):

- a **drift**: low-pass, corner ``drift_hz`` (1-2 Hz), Butterworth (Q = 1/sqrt 2): the slow
  wander of the aim, mean-reverting (the hand holds the target), standard deviation ``drift_deg``;
  over short exposures it gives nearly straight strokes, over longer ones bent ones.  (A plain
  Ornstein-Uhlenbeck angle with the same corner is Brownian, hence jagged, at the pixel scale; an
  OU angular *velocity* never reverts, so long exposures give overlong strokes: this filter is
  the smooth, mean-reverting middle ground.)
- a **physiological tremor**: a resonance at ``tremor_hz`` (8-12 Hz) of quality ``tremor_q``,
  standard deviation ``tremor_deg``: the hooks and wiggles.

The filters start at rest and run a burn-in of 4 amplitude time constants, so the exposure sees
the stationary process.  The angle is sampled at 1 kHz during an exposure drawn log-uniformly in
``exposure`` (s) and projected with a focal length drawn log-uniformly in ``focal_px`` (pixels):
image shift = focal * angle (small angles).  The shared rasteriser (``raster.py``) draws the path
with a Gaussian optical PSF of ``psf_sigma`` px; a path too large for the support is shrunk
about its centre of mass, never clipped (about 3 % of kernels at the defaults).

Calibration (defaults, 33x33): the medians over a bank fall inside the statistics of the paper's
public kernels (thin curved strokes in ~11x7 px boxes, ~35 px above 1 % of the peak, peak ~0.1,
entropy ~3.2 nats; see ``stats.py`` and ``tests/test_kernels_gen.py``).  ``focal_px`` and
``psf_sigma`` scale with ``size / 33``, so other sizes get the same kernels at a proportionally
finer resolution.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import lfilter

from .base import KernelGenerator, log_uniform, uniform
from .raster import rasterize

RATE_HZ = 1000.0  # simulation rate: far above the 12 Hz tremor band
DRIFT_Q = 1.0 / math.sqrt(2.0)  # Butterworth (maximally flat) low-pass


def oscillator(rng: np.random.Generator, samples: int, dt: float, freq_hz: float, q: float, std: float) -> np.ndarray:
    """``(2, samples)``: two independent stationary noise-driven damped oscillators, std ``std``.

    The discrete filter has poles ``exp(-w dt / 2q ± i w dt)``, ``w = 2 pi freq_hz``: a resonance
    for large ``q``, a smooth low-pass for ``q`` near 1/sqrt 2.
    """
    omega = 2.0 * math.pi * freq_hz * dt
    radius = math.exp(-omega / (2.0 * q))
    a1, a2 = 2.0 * radius * math.cos(omega), -radius * radius
    variance = (1.0 - a2) / ((1.0 + a2) * ((1.0 - a2) ** 2 - a1 * a1))  # of the AR(2) with unit drive
    burn_in = math.ceil(4.0 * 2.0 * q / (2.0 * math.pi * freq_hz) / dt)
    drive = rng.standard_normal((2, burn_in + samples)) * (std / math.sqrt(variance))
    return lfilter([1.0], [1.0, -a1, -a2], drive, axis=-1)[:, burn_in:]


class CameraShake(KernelGenerator):
    """Camera-shake kernels (the paper's kind): drift + tremor over a random exposure and focal length."""

    name = "camera-shake"

    @staticmethod
    def defaults(size: int) -> dict:
        scale = size / 33.0
        return {
            "exposure": [1.0 / 60.0, 1.0 / 4.0],
            "focal_px": [6000.0 * scale, 12000.0 * scale],
            "drift_hz": [1.0, 2.0],
            "drift_deg": 0.05,
            "tremor_hz": [8.0, 12.0],
            "tremor_q": 3.0,
            "tremor_deg": 0.02,
            "psf_sigma": 0.3 * scale,
        }

    def _configure(self) -> None:
        self.exposure = self._span("exposure", 0.0, 10.0, open_low=True)
        self.focal_px = self._span("focal_px", 0.0, 1e7, open_low=True)
        self.drift_hz = self._span("drift_hz", 0.1, 100.0)
        self.drift_deg = self._number("drift_deg", 0.0, 90.0)
        self.tremor_hz = self._span("tremor_hz", 0.1, 100.0)
        self.tremor_q = self._number("tremor_q", 0.5, 100.0)
        self.tremor_deg = self._number("tremor_deg", 0.0, 90.0)
        self.psf_sigma = self._number("psf_sigma", 0.0, 1e3)

    def path(self, rng: np.random.Generator) -> tuple[np.ndarray, float, float]:
        """One exposure's image shift ``(samples, 2)`` (rows, cols, px), its time step (s) and drift corner (Hz)."""
        exposure = log_uniform(rng, self.exposure)
        focal = log_uniform(rng, self.focal_px)
        drift_hz, tremor_hz = uniform(rng, self.drift_hz), uniform(rng, self.tremor_hz)
        samples = max(2, math.ceil(exposure * RATE_HZ) + 1)
        dt = exposure / (samples - 1)
        angle = oscillator(rng, samples, dt, drift_hz, DRIFT_Q, self.drift_deg)
        angle += oscillator(rng, samples, dt, tremor_hz, self.tremor_q, self.tremor_deg)
        return focal * np.deg2rad(angle).T, dt, drift_hz

    def _kernel(self, rng: np.random.Generator) -> np.ndarray:
        return rasterize(self.path(rng)[0], self.size, psf_sigma=self.psf_sigma)
