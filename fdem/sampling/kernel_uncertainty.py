"""The kernel's uncertainty in the likelihood of a blind sampler (docs/design.md §14).

Fast EM guides the image with its current kernel ``k̂`` as if it were exact. With the true kernel
``k = k̂ + Δk`` the observation is ``y = k̂ ⊛ x + Δk ⊛ x + σn``: the kernel's error acts as extra
noise ``Δk ⊛ x``, correlated with the image. Taken as Gaussian and stationary, its variance at
frequency ω (per pixel, as ΠGDM's ``σ²`` is) is ``V(ω)·|X(ω)|²/N`` with ``V(ω) = E|ΔK(ω)|²``
(unnormalised DFT, ``N`` pixels), and ΠGDM's Eq. 11 becomes

    d = F⁻¹[ conj(K̂)(Y − K̂·U) / (r²|K̂|² + σ² + κ·V(ω)|U(ω)|²/N) ]

with ``x`` replaced by the particle ``u``. ``V`` is the M-step's own posterior spread: for the linear
Gaussian model ``Y = K·Ū + E``, ``E`` white with the fit's residual variance ``s²`` (the mean
squared ``y − k̂ ⊛ ū`` over measured pixels, so ``x̂0``'s errors count as noise, not only ``σ²``),
and a prior variance ``P = ‖k̂‖²`` per frequency on the kernel's error (an error as large as the
kernel itself), ``V(ω) = 1 / (Σ_c |Ū_c(ω)|² / (N s²) + 1/P)``; ``V(0) = 0`` since every kernel sums
to one. ``V`` is small where the image has energy to pin the kernel down and ``s²`` is small, and
vanishes as the fit becomes exact, so ``κ = 0`` or an exact fit gives ΠGDM's guidance unchanged.
``κ`` (the preset's ``kernel_uncertainty``) scales how far the sampler distrusts the kernel.

With ``K`` > 1 chains per image (``restarts``), ``V`` is measured instead: the spread of the chains'
kernel spectra at the same step. Chains that agree (a kernel the data pin down) keep ΠGDM's guidance;
chains that disagree (a large kernel on a small image) guide each other's images more gently.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.problem import BlurProblem

MISFIT_FLOOR = 1e-12  # s² guard: an exact fit leaves no kernel uncertainty (V = 0), not a NaN


def kernel_spectrum_variance(u: Tensor, problem: BlurProblem, kernel: Tensor) -> Tensor:
    """``V(ω) = E|ΔK(ω)|²``, ``(B, 1, H, W')``: the posterior variance of the kernel's spectrum given
    the particles' mean ``ū`` of ``u (B, n, C, H, W)`` and the fit's residual variance (module notes)."""
    mean = u.mean(dim=1)
    pixels = mean.shape[-1] * mean.shape[-2]
    misfit = problem.misfit(mean, kernel).clamp_min(MISFIT_FLOOR).reshape(-1, 1, 1, 1)
    evidence = torch.fft.rfft2(mean).abs().square().sum(dim=1, keepdim=True) / (pixels * misfit)
    prior = kernel.square().sum(dim=(-2, -1), keepdim=True)  # ‖k̂‖²: (B, 1, 1, 1)
    variance = 1 / (evidence + 1 / prior)
    variance[..., 0, 0] = 0  # ω = 0: a kernel that sums to one has no error there
    return variance


def chain_spectrum_variance(problem: BlurProblem, kernel: Tensor, chains: int) -> Tensor:
    """``V(ω)``, ``(K·B, 1, H, W')``: the spread of the ``K = chains`` independent chains' kernel spectra of
    each image (chain-major rows, :func:`fdem.sampling.restarts.repeat_problem`), the unbiased variance
    ``Σ_j |K_j(ω) − K̄(ω)|² / (K − 1)``, the same for every chain of an image: an empirical ``E|ΔK(ω)|²``."""
    otf = problem.otf(kernel)
    spectra = otf.unflatten(0, (chains, -1))
    spread = (spectra - spectra.mean(dim=0)).abs().square().sum(dim=0) / (chains - 1)
    return spread.repeat(chains, 1, 1, 1)


def kernel_error_variance(u: Tensor, u_hat: Tensor, problem: BlurProblem, kernel: Tensor, chains: int = 1) -> Tensor:
    """The per-frequency, per-pixel variance of ``Δk ⊛ u_p``, ``V(ω)·|U_p(ω)|²/N``, for particles
    ``u (B, n, C, H, W)`` with spectra ``u_hat`` (``(B, n, C, H, W')``): the term the kernel's
    uncertainty adds to ΠGDM's ``σ²``. ``V``: the spread of the ``chains`` kernels of each image when
    there are several (:func:`chain_spectrum_variance`), else the M-step's posterior spread."""
    pixels = u.shape[-1] * u.shape[-2]
    if chains > 1:
        variance = chain_spectrum_variance(problem, kernel, chains)
    else:
        variance = kernel_spectrum_variance(u, problem, kernel)
    return variance.unsqueeze(1) * u_hat.abs().square() / pixels
