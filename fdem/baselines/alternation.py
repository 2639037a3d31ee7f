"""Prior-free alternation: Wiener deconvolution and the M-step in turn, no diffusion model.

The reference point for the learned image priors: same kernel estimator as Fast EM (the HQS
M-step, warm-started), but the image estimate is the linear Wiener filter of the current kernel
instead of a posterior sample.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from fdem.kernel_ops import dirac
from fdem.mstep import estimate_kernel
from fdem.physics import wiener_deconv


@torch.no_grad()
def wiener_alternation(
    y: Tensor,
    sigma: float | Tensor,
    kernel_size: int = 33,
    rounds: int = 30,
    mstep_iters: int = 10,
    lam: float | None = None,
    denoiser=None,
) -> tuple[Tensor, Tensor, float]:
    """``(image (B,C,H,W) in [0,1], kernel (B,1,k,k), seconds)`` after ``rounds`` alternations."""
    start = time.perf_counter()
    kernel = dirac(y.shape[0], kernel_size, y.device, y.dtype)
    for _ in range(rounds):
        x = wiener_deconv(y, kernel, sigma).clamp(0, 1)
        kernel = estimate_kernel(y, x, sigma, kernel_size, lam=lam, iters=mstep_iters, init=kernel, denoiser=denoiser)
    image = wiener_deconv(y, kernel, sigma).clamp(0, 1)
    return image, kernel, time.perf_counter() - start
