"""Blur physics: circular FFT convolution, kernel placement, noise and linear deconvolution.

Conventions (docs/design.md §1): images ``(B, C, H, W)`` in ``[0, 1]``, kernels ``(B, 1, k, k)`` (or one
kernel ``(1, 1, k, k)`` shared by the batch), any size ``k`` (odd or even) with its centre at index
``(k // 2, k // 2)``. The forward model is a *true circular* convolution: the kernel's centre is
placed at pixel ``(0, 0)`` before the FFT (``psf2otf``). Real FFTs (``rfft2``) are used throughout,
so an OTF has shape ``(..., H, W // 2 + 1)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.validate import check_sigma


def check_kernel_fits(kernel_size: tuple[int, int], shape: tuple[int, int]) -> None:
    if kernel_size[0] > shape[0] or kernel_size[1] > shape[1]:
        raise InputError(
            f"kernel of size {kernel_size[0]}x{kernel_size[1]} is larger than the image "
            f"({shape[0]}x{shape[1]})"
        )


def psf2otf(kernel: Tensor, shape: tuple[int, int]) -> Tensor:
    """Zero-pad ``kernel`` to ``shape``, move its centre ``(k//2, k//2)`` to ``(0, 0)``, return its rFFT."""
    kh, kw = kernel.shape[-2:]
    check_kernel_fits((kh, kw), tuple(shape))
    padded = kernel.new_zeros(kernel.shape[:-2] + tuple(shape))
    padded[..., :kh, :kw] = kernel
    padded = torch.roll(padded, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1))
    return torch.fft.rfft2(padded)


def otf2psf(otf: Tensor, shape: tuple[int, int], kernel_size: int | tuple[int, int]) -> Tensor:
    """Inverse of :func:`psf2otf`: the ``k x k`` window centred on pixel ``(0, 0)`` of ``irfft2(otf)``."""
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    return full_to_kernel(torch.fft.irfft2(otf, s=tuple(shape)), (kh, kw))


def full_to_kernel(full: Tensor, kernel_size: tuple[int, int]) -> Tensor:
    """Crop an image-sized kernel (centre at ``(0, 0)``, circular) to ``kernel_size`` centred at ``k//2``."""
    kh, kw = kernel_size
    shifted = torch.roll(full, shifts=(kh // 2, kw // 2), dims=(-2, -1))
    return shifted[..., :kh, :kw]


def blur(x: Tensor, kernel: Tensor) -> Tensor:
    """Circular convolution ``k ⊛ x``: ``x (B,C,H,W)``, ``kernel (B,1,k,k)`` or ``(1,1,k,k)``."""
    otf = psf2otf(kernel.to(x.dtype), x.shape[-2:])
    return torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=x.shape[-2:])


def blur_adjoint(y: Tensor, kernel: Tensor) -> Tensor:
    """Adjoint of :func:`blur` (correlation with the kernel): ``<blur(x,k), y> = <x, blur_adjoint(y,k)>``."""
    otf = psf2otf(kernel.to(y.dtype), y.shape[-2:])
    return torch.fft.irfft2(torch.fft.rfft2(y) * otf.conj(), s=y.shape[-2:])


def as_batch_sigma(sigma: float | Tensor, batch: int, like: Tensor) -> Tensor:
    """Noise level(s) as a ``(B, 1, 1, 1)`` tensor on ``like``'s device (already checked where it
    entered: :func:`fdem.validate.check_sigma`)."""
    if not torch.is_tensor(sigma):
        return torch.full((batch, 1, 1, 1), float(sigma), dtype=like.dtype, device=like.device)
    return sigma.to(device=like.device, dtype=like.dtype).reshape(-1, 1, 1, 1).expand(batch, 1, 1, 1)


def add_noise(y: Tensor, sigma: float | Tensor, generator: torch.Generator | None = None) -> Tensor:
    """``y + sigma * n`` with ``n ~ N(0, I)``; ``sigma`` a float or one value per image (a public
    entry point: σ is checked here)."""
    check_sigma(sigma)
    noise = torch.randn(y.shape, generator=generator, device=y.device, dtype=y.dtype)
    return y + as_batch_sigma(sigma, y.shape[0], y) * noise


def _gradient_power(shape: tuple[int, int], like: Tensor) -> Tensor:
    """``|D_h|² + |D_v|²`` of the circular finite-difference filters, on the rFFT grid."""
    h, w = shape
    fy = torch.fft.fftfreq(h, device=like.device, dtype=like.dtype).view(-1, 1)
    fx = torch.fft.rfftfreq(w, device=like.device, dtype=like.dtype).view(1, -1)
    return 4 * torch.sin(torch.pi * fy) ** 2 + 4 * torch.sin(torch.pi * fx) ** 2


def tikhonov_deconv(y: Tensor, kernel: Tensor, weight: float | Tensor, prior: str = "gradient") -> Tensor:
    """Closed-form ``argmin_x ||k ⊛ x − y||² + weight·||Γx||²``, ``Γ`` = gradient or identity."""
    otf = psf2otf(kernel.to(y.dtype), y.shape[-2:])
    if prior == "gradient":
        reg = _gradient_power(y.shape[-2:], y)
    elif prior == "identity":
        reg = torch.ones((), dtype=y.dtype, device=y.device)
    else:
        raise InputError(f"unknown Tikhonov prior {prior!r}: use 'gradient' or 'identity'")
    weight = weight.reshape(-1, 1, 1, 1) if torch.is_tensor(weight) else weight
    spectrum = otf.conj() * torch.fft.rfft2(y) / (otf.abs() ** 2 + weight * reg + 1e-12)
    return torch.fft.irfft2(spectrum, s=y.shape[-2:])


def wiener_deconv(y: Tensor, kernel: Tensor, sigma: float | Tensor, gradient_var: float = 2e-3) -> Tensor:
    """Wiener filter under a Gaussian gradient prior: Tikhonov with weight ``σ² / gradient_var``.

    ``gradient_var`` is the variance of natural-image finite differences in ``[0, 1]`` units
    (about 2e-3 for photographs at 256²). At ``σ = 0`` a tiny floor keeps the filter stable.
    """
    sig = as_batch_sigma(sigma, y.shape[0], y)
    return tikhonov_deconv(y, kernel, sig.clamp_min(1e-4) ** 2 / gradient_var, prior="gradient")
