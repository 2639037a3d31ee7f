"""Prior-free alternation: Wiener deconvolution and the M-step in turn, no diffusion model.

The reference point for the learned image priors: same kernel estimator as Fast EM (the HQS
M-step, warm-started), but the image estimate is the linear Wiener filter of the current kernel
instead of a posterior sample.
"""

from __future__ import annotations

import time

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_ops import check_kernel_size, dirac
from fdem.mstep import estimate_kernel
from fdem.physics import wiener_deconv
from fdem.restorer_base import Restoration, Restorer


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


class AlternationRestorer(Restorer):
    """:func:`wiener_alternation` as a method of the benchmark (label ``alternation``)."""

    def __init__(self, method: str, device: torch.device | str = "cpu", kernel_size: int = 33, rounds: int = 30,
                 mstep_iters: int = 10, lam: float | None = None, kernel_denoiser: str | None = None):
        from fdem.nets.kernel_denoiser import denoiser_for_kernel

        super().__init__(method, device)
        check_kernel_size(kernel_size, method)
        if rounds < 1 or mstep_iters < 1:
            raise InputError(f"alternation: rounds and mstep_iters must be >= 1, got {rounds} and {mstep_iters}")
        self.options = dict(kernel_size=kernel_size, rounds=rounds, mstep_iters=mstep_iters, lam=lam)
        self.denoiser = None if lam == 0 else denoiser_for_kernel(kernel_size, kernel_denoiser, self.device)

    def params(self) -> dict:
        return {k: v for k, v in self.options.items() if v is not None}

    def _restore(self, y, sigma, kernel, seed, callback) -> Restoration:
        image, estimate, _ = wiener_alternation(y, sigma, denoiser=self.denoiser, **self.options)
        return Restoration(image, estimate)
