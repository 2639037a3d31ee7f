"""The M-step's data step on observed pixels only: exact least squares by preconditioned conjugate gradients.

With unobserved pixels (an imputed margin, saturated lamps) the Fourier data step of
:class:`fdem.mstep.KernelDataTerm` needs a full ``y``: :meth:`~fdem.problem.BlurProblem.impute` fills
the gaps with the current model's ``k ⊛ x̂``, and the M-step then partly refits the kernel it started
from. That is EM on the missing pixels, whose rate is the missing share: with half the pixels
unobserved, one M-step moves the kernel about half way, and inside a 25-step sampler it lags
(docs/design.md §15). Here the gaps are left out instead. Per HQS data step, jointly over channels
(the sum of the per-channel objectives of the Fourier step)::

    z = argmin Σ_p Σ_c ‖m ⊙ (y_c − x_pc ⊛ z)‖² + C·α‖z − k‖² + C·extra·‖z‖²

on the ``k x k`` support, ``m`` the observed mask. Its normal equations ``A z = b`` are solved by
:data:`CG_ITERS` conjugate-gradient iterations warm-started at ``k``, preconditioned by the circulant
that the Fourier step would invert with every pixel observed, scaled by the observed share (restricted
to the support, it stays symmetric positive definite). A fixed iteration count keeps the loop free of
host synchronisation. With every pixel observed the minimiser is that of the summed per-channel
objective, which the Fourier step approximates by averaging per-channel solutions.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.physics import full_to_kernel, psf2otf

CG_ITERS = 12  # per data step; warm-started, preconditioned (tests check convergence on a known kernel)


class MaskedKernelDataTerm:
    """``solve(k)``: the minimiser above for particles ``x (B, n, C, H, W)`` of ``problem`` (whose
    ``observed`` mask is set), same interface as :class:`fdem.mstep.KernelDataTerm`."""

    def __init__(self, problem, x: Tensor, *, alpha: Tensor, extra: Tensor | float = 0.0, iters: int = CG_ITERS):
        self.shape, self.iters = problem.shape, iters
        self.fx = torch.fft.rfft2(x)  # (B, n, C, H, W')
        self.mask = problem.observed.unsqueeze(1)  # (B or 1, 1, 1, H, W)
        channels, alpha = x.shape[2], alpha.reshape(-1, 1, 1, 1)
        extra = extra.reshape(-1, 1, 1, 1) if torch.is_tensor(extra) else extra
        self.shift = channels * alpha  # C·α: the pull towards the HQS variable k
        self.ridge = self.shift + channels * extra
        share = problem.observed.flatten(1).mean(dim=1).reshape(-1, 1, 1, 1)
        energy = (self.fx.abs() ** 2).sum(dim=(1, 2)).unsqueeze(1)  # (B, 1, H, W')
        self.inv_circulant = 1.0 / (share * energy + self.ridge + 1e-12)
        self.data = self._correlate(torch.fft.rfft2(problem.y.unsqueeze(1) * self.mask))  # full-size Σ x ⋆ (m ⊙ y)

    def _correlate(self, spectrum: Tensor) -> Tensor:
        """``(B, 1, H, W)``: ``Σ_p Σ_c`` correlation of ``x_pc`` with an image given by its ``(B, n, C, H, W')`` spectrum."""
        return torch.fft.irfft2((self.fx.conj() * spectrum).sum(dim=(1, 2)).unsqueeze(1), s=self.shape)

    def _normal(self, z: Tensor) -> Tensor:
        """``A z``: the masked data term's Gram operator plus the ridge, on the support."""
        blurred = torch.fft.irfft2(self.fx * psf2otf(z, self.shape).unsqueeze(1), s=self.shape)
        return full_to_kernel(self._correlate(torch.fft.rfft2(blurred * self.mask)), z.shape[-2:]) + self.ridge * z

    def _precondition(self, r: Tensor) -> Tensor:
        """The circulant's inverse applied to ``r`` zero-padded, cropped back to the support."""
        return full_to_kernel(torch.fft.irfft2(psf2otf(r, self.shape) * self.inv_circulant, s=self.shape), r.shape[-2:])

    def solve(self, kernel: Tensor) -> Tensor:
        rhs = full_to_kernel(self.data, kernel.shape[-2:]) + self.shift * kernel
        return conjugate_gradients(self._normal, self._precondition, rhs, kernel, self.iters)


def conjugate_gradients(normal, precondition, rhs: Tensor, start: Tensor, iters: int) -> Tensor:
    """``iters`` preconditioned conjugate-gradient iterations on ``normal(z) = rhs`` from ``start``, one
    system per leading index (kernels ``(B, ..., k, k)``), without reading anything back to the host."""
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
    """Per-system inner product of ``(B, ..., k, k)`` tensors, shaped to broadcast against them."""
    return (a * b).flatten(1).sum(dim=1).reshape((-1,) + (1,) * (a.dim() - 1))
