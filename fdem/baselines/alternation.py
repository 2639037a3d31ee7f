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
from fdem.kernel_field import parse_grid
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
                 mstep_iters: int = 10, lam: float | None = None, kernel_denoiser: str | None = None,
                 kernel_grid=(1, 1)):
        from fdem.nets.kernel_denoiser import denoiser_for_kernel

        super().__init__(method, device)
        check_kernel_size(kernel_size, method)
        if rounds < 1 or mstep_iters < 1:
            raise InputError(f"alternation: rounds and mstep_iters must be >= 1, got {rounds} and {mstep_iters}")
        self.options = dict(kernel_size=kernel_size, rounds=rounds, mstep_iters=mstep_iters, lam=lam)
        self.grid = parse_grid(kernel_grid)
        self.denoiser = None if lam == 0 else denoiser_for_kernel(kernel_size, kernel_denoiser, self.device)

    def params(self) -> dict:
        grid = {"kernel_grid": "x".join(map(str, self.grid))} if self.grid != (1, 1) else {}
        return {**{k: v for k, v in self.options.items() if v is not None}, **grid}

    def _restore(self, y, sigma, kernel, seed, callback) -> Restoration:
        if self.grid != (1, 1):
            return Restoration(*alternation_per_cell(y, sigma, self.grid, denoiser=self.denoiser, **self.options))
        image, estimate, _ = wiener_alternation(y, sigma, denoiser=self.denoiser, **self.options)
        return Restoration(image, estimate)


@torch.no_grad()
def alternation_per_cell(y: Tensor, sigma: float | Tensor, grid: tuple[int, int], **options) -> tuple[Tensor, Tensor]:
    """The alternation run on each cell's window of a ``grid`` (:func:`fdem.kernel_field.cell_support`) by
    itself: ``(image, field (B, M, k, k))``, the cells' images blended by the field's windows (a baseline
    for blur that varies across the frame, docs/design.md §19)."""
    from fdem.kernel_field import cell_support, field_windows

    height, width = y.shape[-2:]
    windows = field_windows((height, width), grid, like=y)
    image, kernels = torch.zeros_like(y), []
    for m in range(grid[0] * grid[1]):
        (top, bottom), (left, right) = cell_support(height, grid[0], m // grid[1]), cell_support(width, grid[1], m % grid[1])
        part, kernel, _ = wiener_alternation(y[..., top:bottom, left:right], sigma, **options)
        image[..., top:bottom, left:right] += windows[m, top:bottom, left:right] * part
        kernels.append(kernel)
    return image, torch.cat(kernels, dim=1)
