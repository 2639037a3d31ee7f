"""The M-step's exact data step: least squares on observed pixels by preconditioned conjugate gradients.

With unobserved pixels (an imputed margin, saturated lamps) the Fourier data step of
:class:`fdem.mstep.KernelDataTerm` needs a full ``y``: :meth:`~fdem.problem.BlurProblem.impute` fills
the gaps with the current model's ``k ⊛ x̂``, and the M-step then partly refits the kernel it started
from. That is EM on the missing pixels, whose rate is the missing share: with half the pixels
unobserved, one M-step moves the kernel about half way, and inside a 25-step sampler it lags
(docs/design.md §15). Here the gaps are left out instead. Per HQS data step, jointly over particles and
channels (the sum of the per-channel objectives of the Fourier step), for kernels ``z_m`` acting on
windows ``w_m`` of the image (one window of ones for a uniform blur; a kernel field's product
convolution, :class:`~fdem.field_problem.FieldProblem`, docs/design.md §19)::

    {z_m} = argmin Σ_p Σ_c ‖o ⊙ (y_c − Σ_m z_m ⊛ (w_m ⊙ x_pc))‖² + C·α Σ_m ‖z_m − k_m‖² + C·extra Σ_m ‖z_m‖²

on the ``k x k`` supports, ``o`` the observed mask. The windows overlap, so a field's kernels are
coupled. The normal equations are solved by :data:`CG_ITERS` conjugate-gradient iterations warm-started
at ``k``, preconditioned per kernel by the circulant that the Fourier step would invert with every pixel
observed, scaled by the observed share (restricted to the support it stays symmetric positive definite;
the coupling between cells is left out of it). A fixed iteration count keeps the loop free of host
synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.physics import full_to_kernel, psf2otf

CG_ITERS = 12  # per data step; warm-started, preconditioned (tests check convergence on a known kernel)


class MaskedKernelDataTerm:
    """``solve(k)``: the minimiser above for particles ``x (B, n, C, H, W)`` of ``problem``, kernels
    ``(B, M, k, k)`` in and out for ``windows (M, H, W)`` (None: one uniform kernel, ``M = 1``); the
    interface of :class:`fdem.mstep.KernelDataTerm`. ``problem.observed`` None: every pixel observed."""

    def __init__(self, problem, x: Tensor, *, alpha: Tensor, extra: Tensor | float = 0.0,
                 windows: Tensor | None = None, iters: int = CG_ITERS):
        self.shape, self.iters = problem.shape, iters
        seen = problem.observed if problem.observed is not None else x.new_ones((1, 1) + tuple(self.shape))
        self.mask = seen.unsqueeze(1)  # (B or 1, 1, 1, H, W)
        windowed = x.unsqueeze(2) if windows is None else x.unsqueeze(2) * windows[:, None]
        self.fx = torch.fft.rfft2(windowed)  # (B, n, M, C, H, W')
        channels, alpha = x.shape[2], alpha.reshape(-1, 1, 1, 1)
        extra = extra.reshape(-1, 1, 1, 1) if torch.is_tensor(extra) else extra
        self.shift = channels * alpha  # C·α: the pull towards the HQS variable k
        self.ridge = self.shift + channels * extra
        share = seen.flatten(1).mean(dim=1).reshape(-1, 1, 1, 1)
        energy = (self.fx.abs() ** 2).sum(dim=(1, 3))  # (B, M, H, W')
        self.inv_circulant = 1.0 / (share * energy + self.ridge + 1e-12)
        self.data = self._correlate(torch.fft.rfft2(problem.y.unsqueeze(1) * self.mask))  # Σ (w_m x) ⋆ (o ⊙ y)

    def _correlate(self, spectrum: Tensor) -> Tensor:
        """``(B, M, H, W)``: each window's particles correlated with an image given by its ``(B, n, C, H, W')``
        spectrum, summed over particles and channels."""
        return torch.fft.irfft2((self.fx.conj() * spectrum.unsqueeze(2)).sum(dim=(1, 3)), s=self.shape)

    def _normal(self, z: Tensor) -> Tensor:
        """``A z``: the masked data term's Gram operator plus the ridge, on the supports."""
        blurred = torch.fft.irfft2((self.fx * psf2otf(z, self.shape)[:, None, :, None]).sum(dim=2), s=self.shape)
        return full_to_kernel(self._correlate(torch.fft.rfft2(blurred * self.mask)), z.shape[-2:]) + self.ridge * z

    def _precondition(self, r: Tensor) -> Tensor:
        """Each kernel's circulant inverse applied to it zero-padded, cropped back to the support."""
        return full_to_kernel(torch.fft.irfft2(psf2otf(r, self.shape) * self.inv_circulant, s=self.shape), r.shape[-2:])

    def solve(self, kernel: Tensor) -> Tensor:
        rhs = full_to_kernel(self.data, kernel.shape[-2:]) + self.shift * kernel
        return conjugate_gradients(self._normal, self._precondition, rhs, kernel, self.iters)


def conjugate_gradients(normal, precondition, rhs: Tensor, start: Tensor, iters: int) -> Tensor:
    """``iters`` preconditioned conjugate-gradient iterations on ``normal(z) = rhs`` from ``start``, one
    system per image (kernels ``(B, M, k, k)``), without reading anything back to the host."""
    z, r = start, rhs - normal(start)
    s = precondition(r)
    p, rs = s, _dot(r, s)
    for _ in range(iters):
        ap = normal(p)
        pap = _dot(p, ap)
        step = torch.where(pap > 0, rs / pap.clamp_min(1e-30), torch.zeros_like(pap))
        z, r = z + step * p, r - step * ap
        s = precondition(r)
        rs_next = _dot(r, s)
        p = s + torch.where(rs > 0, rs_next / rs.clamp_min(1e-30), torch.zeros_like(rs)) * p
        rs = rs_next
    return z


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-image inner product of ``(B, M, k, k)`` tensors, shaped ``(B, 1, 1, 1)`` to broadcast."""
    return (a * b).sum(dim=(1, 2, 3), keepdim=True)
