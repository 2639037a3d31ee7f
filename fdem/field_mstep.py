"""The exact data step of a kernel field's M-step: the joint normal equations of product convolution.

For ``y = Σ_m k_m ⊛ (w_m ⊙ x) + n`` (:class:`~fdem.field_problem.FieldProblem`) the HQS data step over all
cells at once is, per image (jointly over particles and channels, on the observed pixels ``o``)::

    {z_m} = argmin Σ_p Σ_c ‖o ⊙ (y_c − Σ_m z_m ⊛ (w_m ⊙ x_pc))‖² + C·α Σ_m ‖z_m − k_m‖² (+ C·extra Σ_m ‖z_m‖²)

The windows overlap, so the cells' kernels are coupled: the M·k² unknowns are solved together by
preconditioned conjugate gradients (:func:`fdem.masked_mstep.conjugate_gradients`), the preconditioner
each cell's own circulant (its windowed image's energy, scaled by the observed share) with the coupling
left out. The windowed approximation (`field_solve: windowed`, :mod:`fdem.sampling.field_em`) instead solves
each cell alone on ``(c_m ⊙ y, c_m ⊙ x)``; docs/design.md §19 compares them.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.masked_mstep import CG_ITERS, MaskedKernelDataTerm
from fdem.physics import full_to_kernel, psf2otf


class JointFieldDataTerm(MaskedKernelDataTerm):
    """``solve(field)``: the minimiser above for particles ``x (B, n, C, H, W)`` of a field ``problem``,
    fields ``(B, M, k, k)`` in and out; the conjugate gradients and the preconditioner's application are
    the masked uniform step's, with one kernel and one circulant per cell."""

    def __init__(self, problem, x: Tensor, *, alpha: Tensor, extra: Tensor | float = 0.0, iters: int = CG_ITERS):
        self.shape, self.iters = problem.shape, iters
        seen = problem.observed if problem.observed is not None else x.new_ones((1, 1) + tuple(self.shape))
        self.mask = seen.unsqueeze(1)  # (B or 1, 1, 1, H, W)
        self.fx = torch.fft.rfft2(x.unsqueeze(2) * problem.windows[:, None])  # (B, n, M, C, H, W')
        channels, alpha = x.shape[2], alpha.reshape(-1, 1, 1, 1)
        extra = extra.reshape(-1, 1, 1, 1) if torch.is_tensor(extra) else extra
        self.shift = channels * alpha
        self.ridge = self.shift + channels * extra
        share = seen.flatten(1).mean(dim=1).reshape(-1, 1, 1, 1)
        energy = (self.fx.abs() ** 2).sum(dim=(1, 3))  # (B, M, H, W')
        self.inv_circulant = 1.0 / (share * energy + self.ridge + 1e-12)
        self.data = self._correlate(torch.fft.rfft2(problem.y.unsqueeze(1) * self.mask))

    def _correlate(self, spectrum: Tensor) -> Tensor:
        """``(B, M, H, W)``: each cell's windowed particles correlated with an image given by its
        ``(B, n, C, H, W')`` spectrum, summed over particles and channels."""
        return torch.fft.irfft2((self.fx.conj() * spectrum.unsqueeze(2)).sum(dim=(1, 3)), s=self.shape)

    def _normal(self, z: Tensor) -> Tensor:
        blurred = torch.fft.irfft2((self.fx * psf2otf(z, self.shape)[:, None, :, None]).sum(dim=2), s=self.shape)
        return full_to_kernel(self._correlate(torch.fft.rfft2(blurred * self.mask)), z.shape[-2:]) + self.ridge * z
