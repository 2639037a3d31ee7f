"""The M-step: kernel estimation from sharp estimates by half-quadratic splitting (DESIGN.md §4).

Given the blurry ``y`` and ``n`` sharp estimates ``x_p`` of each image, HQS alternates

* a data step, solved exactly in Fourier, per colour channel, then averaged over channels::

      Z = F⁻¹[(Σ_p conj(X_p)·Y + α·F(k)) / (Σ_p |X_p|² + α + extra)]      α = σ²β ("official")

  cropped to ``k x k``, clipped at 0 and normalised;
* a prior step on ``Z``: the Plug-and-Play denoiser ``D(Z, √(λ/β))`` ("pnp"), soft
  thresholding ``max(Z − λ/β, 0)`` ("l1"), or nothing ("l2", whose ``λ‖k‖²`` term sits in the
  data step as ``extra = 2σ²λ``: after the sum-to-one projection a separate ℓ2 shrinkage would be
  a uniform scale and change nothing), followed by the same projection.

``mode="paper"`` uses the paper's Eq. 24 weight ``α = nβσ²`` and its expected-likelihood
M-step (Eq. 33): ``extra = n·N·r²`` with ``N = H·W`` and ``r²`` the posterior variance of the
particles in ``[0, 1]`` units. The FFTs of the images are computed once and reused by every
HQS iteration; everything stays on the input's device.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_ops import dirac, normalize_kernel
from fdem.physics import check_kernel_fits, as_batch_sigma, full_to_kernel, psf2otf

REGULARISERS = ("pnp", "l1", "l2")
MODES = ("official", "paper")


def default_lambda(kernel_size: int, denoiser=None) -> float:
    """The PnP weight λ that goes with the denoiser.

    No denoiser (the shipped one is loaded) or a shipped one: the λ tuned for it
    (``SHIPPED_LAMBDA``, from the Figure-4 benchmark, carried as ``denoiser.recommended_lambda``);
    any other network, e.g. the authors': their λ, 1 for 33×33 kernels and 0.2 for 64×64.
    """
    if denoiser is None:
        from fdem.nets.kernel_denoiser import SHIPPED_LAMBDA

        return SHIPPED_LAMBDA[33 if kernel_size <= 48 else 64]
    recommended = getattr(denoiser, "recommended_lambda", None)
    if recommended is not None:
        return recommended
    return 1.0 if kernel_size <= 48 else 0.2


class KernelDataTerm:
    """Precomputed Fourier terms of ``Σ_p ||y − x_p ⊛ z||² + α||z − k||² + extra·||z||²``.

    ``solve(k)`` returns the minimiser ``z`` (solved per channel, averaged over channels, cropped
    to the kernel window), before any projection. The channel average is linear, so it is taken
    in Fourier once: ``mean_c Z_c = mean_c(N_c/D_c) + α·mean_c(1/D_c)·K``, and each HQS iteration
    costs one kernel FFT and one inverse FFT per image.
    """

    def __init__(self, y: Tensor, x: Tensor, alpha: Tensor, extra: Tensor | float = 0.0):
        self.shape = y.shape[-2:]
        fy = torch.fft.rfft2(y)  # (B, C, H, W')
        fx = torch.fft.rfft2(x)  # (B, n, C, H, W')
        alpha = alpha.reshape(-1, 1, 1, 1)
        extra = extra.reshape(-1, 1, 1, 1) if torch.is_tensor(extra) else extra
        numerator = (fx.conj() * fy.unsqueeze(1)).sum(dim=1)
        inv_denominator = 1.0 / ((fx.abs() ** 2).sum(dim=1) + alpha + extra + 1e-12)
        self.offset = (numerator * inv_denominator).mean(dim=1, keepdim=True)
        self.gain = alpha * inv_denominator.mean(dim=1, keepdim=True)

    def solve(self, kernel: Tensor) -> Tensor:
        spectrum = self.offset + self.gain * psf2otf(kernel, self.shape)
        return full_to_kernel(torch.fft.irfft2(spectrum, s=self.shape), kernel.shape[-2:])


@lru_cache(maxsize=8)
def _shipped_denoiser(kernel_size: int, device: str):
    from fdem.nets.kernel_denoiser import denoiser_for_kernel

    return denoiser_for_kernel(kernel_size, device=device)


def _check_inputs(y: Tensor, x: Tensor, kernel_size: int, reg: str, mode: str) -> Tensor:
    if reg not in REGULARISERS:
        raise InputError(f"unknown regulariser {reg!r}: choose one of {', '.join(REGULARISERS)}")
    if mode not in MODES:
        raise InputError(f"unknown M-step mode {mode!r}: choose one of {', '.join(MODES)}")
    if kernel_size < 1:
        raise InputError(f"kernel_size must be >= 1, got {kernel_size}")
    check_kernel_fits((kernel_size, kernel_size), tuple(y.shape[-2:]))
    if x.dim() == 4:
        x = x.unsqueeze(1)
    if x.dim() != 5 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[1:]:
        raise InputError(f"x must be (B, n, C, H, W) or (B, C, H, W) matching y {tuple(y.shape)}, got {tuple(x.shape)}")
    return x


@torch.no_grad()
def estimate_kernel(
    y: Tensor,
    x: Tensor,
    sigma: float | Tensor,
    kernel_size: int,
    reg: str = "pnp",
    lam: float | None = None,
    beta: float = 1e5,
    iters: int = 10,
    init: Tensor | None = None,
    denoiser=None,
    mode: str = "official",
    r2: float | Tensor = 0.0,
) -> Tensor:
    """Estimate ``(B, 1, k, k)`` kernels from blurry ``y (B,C,H,W)`` and sharp ``x (B,n,C,H,W)``.

    ``sigma`` is the noise level in ``[0, 1]`` units (float or one per image); ``lam`` defaults to
    :func:`default_lambda` for ``pnp`` (the shipped denoiser's λ, or the authors' λ when a
    ``denoiser`` is passed) and must be given for ``l1``/``l2``; ``init`` warm-starts
    (default: Dirac); ``denoiser`` defaults to the shipped one for the kernel size; ``r2`` is the
    particles' posterior variance used by ``mode="paper"``.
    """
    x = _check_inputs(y, x, kernel_size, reg, mode)
    if lam is None:
        if reg != "pnp":
            raise InputError(f"lam must be given for the {reg} regulariser")
        lam = default_lambda(kernel_size, denoiser)
    if lam < 0 or beta <= 0:
        raise InputError(f"need lam >= 0 and beta > 0, got lam={lam}, beta={beta}")
    batch, particles = x.shape[:2]
    sig2 = as_batch_sigma(sigma, batch, y).reshape(-1) ** 2
    alpha = sig2 * beta * (particles if mode == "paper" else 1)
    extra = particles * y.shape[-1] * y.shape[-2] * torch.as_tensor(r2, device=y.device) if mode == "paper" else 0.0
    if reg == "l2":
        extra = extra + 2 * sig2 * lam
    data = KernelDataTerm(y, x, alpha, extra)
    if reg == "pnp" and denoiser is None and lam > 0:
        denoiser = _shipped_denoiser(kernel_size, str(y.device))
    kernel = dirac(batch, kernel_size, y.device, y.dtype) if init is None else init.to(y.dtype)
    for _ in range(iters):
        z = normalize_kernel(data.solve(kernel))
        kernel = normalize_kernel(_prior_step(z, reg, lam, beta, denoiser))
    return kernel


def _prior_step(z: Tensor, reg: str, lam: float, beta: float, denoiser) -> Tensor:
    """The proximal step of ``λR/β`` (PnP: the denoiser at level ``√(λ/β)``)."""
    if reg == "l1":
        return (z - lam / beta).clamp_min(0)
    if reg == "pnp" and lam > 0:
        return denoiser(z, (lam / beta) ** 0.5)
    return z
