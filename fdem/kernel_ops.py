"""Kernel utilities on the tensor's own device: projection, centre of mass, re-centring, kernel MSE.

All functions take batches ``(B, 1, k, k)`` and never leave the device (no numpy, no ``.item()``),
so they can run inside sampling loops.
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.errors import InputError


def check_kernel_size(kernel_size: int, who: str) -> None:
    """Raise an :class:`InputError` (naming ``who``) unless ``kernel_size`` is an integer >= 3."""
    if not isinstance(kernel_size, int) or isinstance(kernel_size, bool) or kernel_size < 3:
        raise InputError(f"{who}: kernel_size must be an integer >= 3, got {kernel_size!r}")


def dirac(batch: int, size: int, device=None, dtype=torch.float32) -> Tensor:
    """``(B, 1, k, k)`` Dirac kernels at ``(k//2, k//2)``: the M-step's cold start."""
    k = torch.zeros(batch, 1, size, size, device=device, dtype=dtype)
    k[..., size // 2, size // 2] = 1.0
    return k


def normalize_kernel(kernel: Tensor, eps: float = 1e-12) -> Tensor:
    """Project onto the simplex the cheap way: clip at 0, divide by the sum."""
    kernel = kernel.clamp_min(0)
    return kernel / kernel.sum(dim=(-2, -1), keepdim=True).clamp_min(eps)


def center_of_mass(kernel: Tensor) -> Tensor:
    """``(B, 2)`` centre of mass (row, col) in index coordinates of non-negative kernels."""
    h, w = kernel.shape[-2:]
    mass = kernel.sum(dim=(-2, -1)).clamp_min(1e-12).reshape(-1)
    rows = torch.arange(h, device=kernel.device, dtype=kernel.dtype)
    cols = torch.arange(w, device=kernel.device, dtype=kernel.dtype)
    flat = kernel.reshape(-1, h, w)
    row = (flat.sum(-1) * rows).sum(-1) / mass
    col = (flat.sum(-2) * cols).sum(-1) / mass
    return torch.stack([row, col], dim=-1)


def _linear_shift_matrix(shift: Tensor, size: int) -> Tensor:
    """``(B, k, k)`` matrices ``S`` with ``(S v)[i] = v(i − shift)`` by linear interpolation."""
    idx = torch.arange(size, device=shift.device, dtype=shift.dtype)
    offset = idx.view(1, -1, 1) - idx.view(1, 1, -1) - shift.view(-1, 1, 1)
    return (1 - offset.abs()).clamp_min(0)


def recenter(kernel: Tensor) -> Tensor:
    """Shift each kernel (bilinear, sub-pixel) so that its centre of mass is ``(k//2, k//2)``.

    Linear interpolation moves the centre of mass by exactly the requested shift as long as no
    mass leaves the support; the result is re-normalised.
    """
    h, w = kernel.shape[-2:]
    target = torch.tensor([h // 2, w // 2], device=kernel.device, dtype=kernel.dtype)
    return shift_bilinear(kernel, target - center_of_mass(kernel))


def shift_bilinear(kernel: Tensor, shift: Tensor) -> Tensor:
    """Kernels ``(…, h, w)`` shifted by ``shift`` (one (row, column) pair per kernel, ``(N, 2)``) by linear
    interpolation, clipped to the support and re-normalised."""
    h, w = kernel.shape[-2:]
    flat = kernel.reshape(-1, h, w)
    shifted = _linear_shift_matrix(shift[:, 0], h) @ flat @ _linear_shift_matrix(shift[:, 1], w).transpose(-1, -2)
    return normalize_kernel(shifted.reshape(kernel.shape))


def kernel_mse(estimate: Tensor, truth: Tensor) -> Tensor:
    """Per-kernel MSE ``(B,)`` over the true kernel's ``k x k`` support, both normalised to sum 1 and
    centred by their centre of mass.

    An estimate of another size (e.g. Blind-DPS's 64×64 against a 33×33 truth) is centred at its
    own size, then cropped or zero-padded to ``k x k`` around its centre: mass it puts outside the
    true support is lost (and so counts as error), and the mean is always over ``k²`` pixels, so
    methods with different kernel sizes get comparable numbers.
    """
    est = recenter(normalize_kernel(estimate))
    if est.shape[-1] != truth.shape[-1]:
        est = pad_kernel(est, truth.shape[-1])
    ref = recenter(normalize_kernel(truth))
    return ((est - ref) ** 2).mean(dim=(-3, -2, -1))


def pad_kernel(kernel: Tensor, size: int) -> Tensor:
    """Zero-pad (or crop) a ``(…, k, k)`` kernel to ``size x size`` keeping index ``k//2`` at ``size//2``."""
    k = kernel.shape[-1]
    if size < k:
        start = k // 2 - size // 2
        return kernel[..., start : start + size, start : start + size]
    before = size // 2 - k // 2
    after = size - k - before
    return torch.nn.functional.pad(kernel, (before, after, before, after))
