"""Full-reference fidelity metrics that need no weights: PSNR (plain and aligned), SSIM, re-blur loss, kernel MSE.

All take ``(B, C, H, W)`` batches in ``[0, 1]`` (docs/design.md §1) and return one value per image,
so that a benchmark averages per-image values (PSNR is averaged after the log, as in the paper).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_field import scene_field_blur
from fdem.kernel_ops import kernel_mse
from fdem.physics import as_batch_sigma, blur

__all__ = ["psnr", "aligned_psnr", "ssim", "reblur_loss", "kernel_mse", "gaussian_window"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _precise(x: Tensor) -> Tensor:
    """``x`` in float64 for accurate sums, or float32 on devices without float64 (Apple MPS)."""
    return x.float() if x.device.type == "mps" else x.double()


def _check_pair(a: Tensor, b: Tensor, what: str) -> None:
    if a.dim() != 4 or a.shape != b.shape:
        raise InputError(f"{what} needs two (B,C,H,W) batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


@torch.no_grad()
def psnr(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """``(B,)`` PSNR in dB of each image pair: ``10·log10(range² / MSE)`` (``inf`` for identical images)."""
    _check_pair(a, b, "psnr")
    mse = (_precise(a) - _precise(b)).pow(2).mean(dim=(1, 2, 3))
    return (10 * torch.log10(data_range**2 / mse)).to(a.dtype)


ALIGN_SHIFT = 4  # px each way that aligned_psnr searches


def aligned_psnr(a: Tensor, b: Tensor, data_range: float = 1.0, max_shift: int = ALIGN_SHIFT) -> Tensor:
    """``(B,)`` PSNR of each image of ``a`` against ``b`` at its best integer shift within ``max_shift`` px,
    both compared on ``b``'s window ``max_shift`` px inside the border. Blind deconvolution determines the
    image only up to a shift (``k(· − d)`` and ``x(· + d)`` explain ``y`` alike; a re-centred kernel that
    is only part of the true one moves the image by the difference of their centres), so blind-deblurring
    benchmarks align before they measure (Levin et al. 2009, Köhler et al. 2012); the plain :func:`psnr`
    counts such a shift as error."""
    _check_pair(a, b, "aligned_psnr")
    s = max_shift
    h, w = b.shape[-2:]
    if min(h, w) <= 2 * s:
        raise InputError(f"aligned_psnr needs images larger than {2 * s} px a side, got {h}x{w}")
    moved, target = _precise(a), _precise(b[..., s:h - s, s:w - s])
    best = None
    for dy in range(-s, s + 1):
        for dx in range(-s, s + 1):
            mse = (moved[..., s + dy:h - s + dy, s + dx:w - s + dx] - target).pow(2).mean(dim=(1, 2, 3))
            best = mse if best is None else torch.minimum(best, mse)
    return (10 * torch.log10(data_range**2 / best)).to(a.dtype)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, dtype=torch.float32, device=None) -> Tensor:
    """``(size,)`` normalised 1-D Gaussian; the SSIM window is its outer product with itself."""
    x = torch.arange(size, dtype=torch.float64, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype)


def _filter(x: Tensor, window: Tensor) -> Tensor:
    """Separable 'valid' Gaussian filtering of every channel (depthwise conv2d)."""
    c = x.shape[1]
    k = window.numel()
    x = F.conv2d(x, window.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)
    return F.conv2d(x, window.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)


@torch.no_grad()
def ssim(a: Tensor, b: Tensor, data_range: float = 1.0) -> Tensor:
    """``(B,)`` SSIM of Wang et al. (2004): Gaussian window 11, σ 1.5, K1 0.01, K2 0.03.

    Computed per channel over the 'valid' window positions (as scikit-image does after cropping
    its border), with population (not sample) variances, then averaged over channels.
    """
    _check_pair(a, b, "ssim")
    if min(a.shape[-2:]) < SSIM_WINDOW:
        raise InputError(f"ssim needs images of at least {SSIM_WINDOW}x{SSIM_WINDOW}, got {a.shape[-2]}x{a.shape[-1]}")
    x, y = _precise(a), _precise(b)
    window = gaussian_window(dtype=x.dtype, device=x.device)
    mu_x, mu_y = _filter(x, window), _filter(y, window)
    var_x = _filter(x * x, window) - mu_x**2
    var_y = _filter(y * y, window) - mu_y**2
    cov = _filter(x * y, window) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    num = (2 * mu_x * mu_y + c1) * (2 * cov + c2)
    den = (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2)
    return (num / den).mean(dim=(1, 2, 3)).to(a.dtype)


@torch.no_grad()
def reblur_loss(image: Tensor, kernel: Tensor, y: Tensor, sigma: float | Tensor) -> tuple[Tensor, Tensor]:
    """Paper Eq. 34 per image: ``‖k ⊛ x − y‖² − σ²·C·H·W``, and the same divided by ``C·H·W``.

    ``image`` and ``y`` are ``(B, C, H, W)``, ``kernel`` ``(B, 1, k, k)`` (circular FFT blur,
    :func:`fdem.physics.blur`) or a square kernel field ``(B, G·G, k, k)`` on the image (:func:`fdem.kernel_field.field_blur`), ``sigma`` a float or ``(B,)`` on the ``[0, 1]`` scale.
    Returns ``(total (B,), per_pixel (B,))``; near 0 when the pair explains ``y`` up to the noise.
    """
    _check_pair(image, y, "reblur_loss")
    side = math.isqrt(kernel.shape[1]) if kernel.dim() == 4 else 0
    if kernel.dim() != 4 or side * side != kernel.shape[1] or kernel.shape[0] not in (1, image.shape[0]):
        raise InputError(f"reblur_loss needs kernels (B,1,k,k) or (1,1,k,k), or square fields (B,G·G,k,k), got {tuple(kernel.shape)}")
    x = _precise(image)
    count = image.shape[1] * image.shape[2] * image.shape[3]
    kernel = kernel.to(x.dtype)
    blurred = blur(x, kernel) if side == 1 else scene_field_blur(x, kernel, (side, side), ((0, 0), tuple(x.shape[-2:])))
    residual = (blurred - y.to(x.dtype)).pow(2).sum(dim=(1, 2, 3))
    noise = as_batch_sigma(sigma, image.shape[0], x).reshape(-1) ** 2 * count
    total = residual - noise
    return total.to(image.dtype), (total / count).to(image.dtype)
