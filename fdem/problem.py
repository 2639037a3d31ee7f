"""The blur problem ``y = k ⊛ x + σn`` of one run, with the spectra it reuses (docs/design.md §1).

A :class:`BlurProblem` is built once per run and handed to the guidance rules
(:mod:`fdem.sampling.guidance`) and to the M-step (:mod:`fdem.mstep`): ``y``'s real FFT is computed
once, not once per diffusion step, and the kernel's OTF is cached for the last kernel *tensor* seen
(a non-blind run computes it once; Fast EM, whose M-step returns a new kernel every step, once per
step). Kernels are never modified in place, so the identity of the tensor is a safe cache key.
Everything stays on ``y``'s device and in ``y``'s dtype; ``u`` passed in must have that dtype.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.physics import as_batch_sigma, psf2otf
from fdem.validate import check_sigma


class BlurProblem:
    """Blurry ``y (B, C, H, W)`` in ``[0, 1]`` with noise level ``sigma`` (float or ``(B,)``, ``[0, 1]``
    units), and the circular-blur operator ``H`` of a kernel ``(B, 1, k, k)`` or ``(1, 1, k, k)``.

    ``observed`` (``(B or 1, 1, H, W)``, 1 where ``y`` was measured, 0 elsewhere; None: everywhere)
    marks a padded margin as missing data: :meth:`impute` refills it with the current model's
    prediction ``k ⊛ x̂``, so the circular model holds on the whole canvas and the margin's
    residual is zero (the EM treatment of unknown boundaries, docs/design.md §9).
    """

    def __init__(self, y: Tensor, sigma: float | Tensor, observed: Tensor | None = None):
        if not torch.is_tensor(y) or y.dim() != 4:
            raise InputError(f"y must be a (B, C, H, W) tensor, got {getattr(y, 'shape', type(y))}")
        if observed is not None and (observed.dim() != 4 or observed.shape[1] != 1 or observed.shape[-2:] != y.shape[-2:]
                                     or observed.shape[0] not in (1, y.shape[0])):
            raise InputError(f"observed must be (B or 1, 1, H, W) matching y {tuple(y.shape)}, got {tuple(observed.shape)}")
        self.measured = y
        self.observed = None if observed is None else observed.to(y)
        self.y = y
        self.sigma = as_batch_sigma(check_sigma(sigma), y.shape[0], y).reshape(-1)  # (B,): checked once, here
        self.shape = tuple(y.shape[-2:])
        self.y_hat = torch.fft.rfft2(y)  # (B, C, H, W // 2 + 1), once per run
        self._kernel: Tensor | None = None
        self._otf: Tensor | None = None

    def otf(self, kernel: Tensor) -> Tensor:
        """``K = F(k)`` on ``y``'s grid, ``(B, 1, H, W')``; recomputed only for a new kernel tensor."""
        if kernel is not self._kernel:
            self._kernel, self._otf = kernel, psf2otf(kernel.to(self.y.dtype), self.shape)
        return self._otf

    def forward(self, u: Tensor, kernel: Tensor) -> Tensor:
        """``H u = k ⊛ u`` for ``u (B, C, H, W)`` or particles ``(B, n, C, H, W)``."""
        return self.image(self._per_image(self.otf(kernel), u) * torch.fft.rfft2(u))

    def adjoint(self, spectrum: Tensor, kernel: Tensor) -> Tensor:
        """``Hᵀ v`` (correlation with ``k``) of ``v`` given by its spectrum ``V``: ``F⁻¹[conj(K)·V]``."""
        return self.image(self._per_image(self.otf(kernel), spectrum).conj() * spectrum)

    def pseudo_inverse(self, residual: Tensor, kernel: Tensor, r2: float, noise: Tensor) -> Tensor:
        """ΠGDM's ``Hᵀ(r²HHᵀ + noise)⁻¹ v`` of ``v`` given by its spectrum ``residual (B, n, C, H, W')``:
        ``F⁻¹[conj(K)·V / (r²|K|² + noise)]`` (``noise``: ``σ²``, or a per-frequency variance, broadcastable)."""
        otf = self.otf(kernel).unsqueeze(1)
        return self.image(otf.conj() * residual / (r2 * otf.abs().square() + noise))

    def repeat(self, times: int) -> "BlurProblem":
        """The same observation ``times`` over, batch-major blocks (restarts: chain ``j`` of image ``b`` is row ``j·B + b``)."""
        observed = self.observed
        if observed is not None and observed.shape[0] > 1:
            observed = observed.repeat(times, 1, 1, 1)
        return type(self)(self.measured.repeat(times, 1, 1, 1), self.sigma.repeat(times), observed, **self.model())

    def model(self) -> dict:
        """The blur model's own arguments beyond the observation (none for a uniform kernel)."""
        return {}

    def residual_spectrum(self, u: Tensor, kernel: Tensor, u_hat: Tensor | None = None) -> Tensor:
        """``Y − K·U`` for particles ``u (B, n, C, H, W)``: the spectrum of ``y − H u_p``, ``(B, n, C, H, W')``
        (``u_hat``: ``u``'s spectrum when the caller has it already)."""
        u_hat = torch.fft.rfft2(u) if u_hat is None else u_hat
        return self.y_hat.unsqueeze(1) - self.otf(kernel).unsqueeze(1) * u_hat

    def impute(self, u: Tensor, kernel: Tensor) -> None:
        """Refill the unobserved pixels of ``y`` with ``k ⊛ ū`` (``ū`` the mean of the particles
        ``u (B, n, C, H, W)``) and refresh ``y``'s spectrum; nothing to do when all pixels are observed."""
        if self.observed is None:
            return
        predicted = self.forward(u.mean(dim=1), kernel)
        self.y = self.observed * self.measured + (1 - self.observed) * predicted
        self.y_hat = torch.fft.rfft2(self.y)

    def misfit(self, u: Tensor, kernel: Tensor) -> Tensor:
        """Per-image mean squared data residual ``‖y − k ⊛ u‖²`` of ``u (B, C, H, W)`` over the measured
        pixels only (the observation as given, not its imputed margin): ``(B,)``, about ``σ²`` for a good fit."""
        residual = (self.measured - self.forward(u, kernel)) ** 2
        if self.observed is None:
            return residual.mean(dim=(1, 2, 3))
        weight = self.observed.expand(residual.shape[0], 1, -1, -1)
        return (residual * weight).sum(dim=(1, 2, 3)) / (weight.sum(dim=(1, 2, 3)) * residual.shape[1])

    def image(self, spectrum: Tensor) -> Tensor:
        """``F⁻¹`` back to the ``H × W`` image grid."""
        return torch.fft.irfft2(spectrum, s=self.shape)

    @staticmethod
    def _per_image(otf: Tensor, like: Tensor) -> Tensor:
        """``K`` broadcast against ``like``: ``(B, 1, H, W')`` for images, ``(B, 1, 1, H, W')`` for particles."""
        return otf.unsqueeze(1) if like.dim() == 5 else otf
