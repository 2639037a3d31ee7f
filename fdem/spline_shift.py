"""Sub-pixel kernel shifts by cubic B-splines, as ``scipy.ndimage.shift(order=3, mode="constant")``
computes them, on the kernel's device (the authors' re-centring of Fast EM, docs/design.md §4).

scipy first turns the samples into B-spline coefficients (the "prefilter": per axis, the
coefficients ``c`` solve ``c[j−1] + 4c[j] + c[j+1] = 6f[j]`` with mirror-symmetric ends), then
evaluates the spline at ``j − s``: the four taps around the point, indices folded back by the same
mirror, and 0 for points outside ``[0, k − 1]`` (constant mode: mass that leaves the window is lost,
nothing is clipped or renormalised). Both steps are linear and separable, so a shift by ``s`` is
one ``k × k`` matrix per axis, ``S(s) = W(s)·P``: ``P`` is fixed per size (built once, cached) and
``W(s)`` is assembled from the shift with tensor operations only — no value goes back to the host,
so it can run inside the sampling loop.
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor

from fdem.kernel_ops import center_of_mass

TAPS = (-1, 0, 1, 2)  # offsets of the four B-spline coefficients around floor(x)


@lru_cache(maxsize=32)
def _prefilter64(size: int) -> Tensor:
    """``6·T⁻¹`` (float64, CPU) for the tridiagonal ``T`` of the mirror-boundary cubic interpolation."""
    system = 4 * torch.eye(size, dtype=torch.float64)
    off = torch.ones(size - 1, dtype=torch.float64)
    system += torch.diag(off, 1) + torch.diag(off, -1)
    if size > 1:
        system[0, 1] = system[-1, -2] = 2.0
    return 6 * torch.linalg.inv(system)


def prefilter_matrix(size: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """The ``(k, k)`` map from samples to cubic B-spline coefficients (scipy's ``spline_filter1d``)."""
    return _prefilter64(size).to(device=device, dtype=dtype)


def cubic_bspline(t: Tensor) -> Tensor:
    """The centred cubic B-spline β³(t)."""
    t = t.abs()
    near = 2 / 3 - t**2 + t**3 / 2
    far = (2 - t).clamp_min(0) ** 3 / 6
    return torch.where(t < 1, near, far)


def _mirror(index: Tensor, size: int) -> Tensor:
    """Fold indices into ``[0, size)`` by whole-sample symmetry (edge sample not repeated)."""
    if size == 1:
        return torch.zeros_like(index)
    period = 2 * (size - 1)
    index = index.remainder(period)
    return torch.where(index >= size, period - index, index)


def shift_matrix(shift: Tensor, size: int) -> Tensor:
    """``(B, k, k)`` matrices ``S`` with ``S·v`` = scipy's cubic shift of ``v`` by ``shift (B,)``."""
    dtype = shift.dtype if shift.is_floating_point() else torch.float32
    x = torch.arange(size, device=shift.device, dtype=dtype) - shift.to(dtype)[:, None]  # (B, k) sample points
    inside = ((x >= 0) & (x <= size - 1)).to(dtype)
    start = x.floor()
    weights = torch.zeros(shift.shape[0], size, size, device=shift.device, dtype=dtype)
    for tap in TAPS:
        node = start + tap
        index = _mirror(node.long(), size)
        weights.scatter_add_(2, index[..., None], (cubic_bspline(x - node) * inside)[..., None])
    return weights @ prefilter_matrix(size, dtype, shift.device)


def spline_shift(kernel: Tensor, shift: Tensor) -> Tensor:
    """Shift ``(B, 1, h, w)`` kernels by ``shift (B, 2)`` (rows, columns) with cubic splines."""
    h, w = kernel.shape[-2:]
    rows = shift_matrix(shift[:, 0], h)
    cols = shift_matrix(shift[:, 1], w)
    flat = kernel.reshape(-1, h, w)
    return (rows @ flat @ cols.transpose(-1, -2)).reshape(kernel.shape)


def spline_target(size: int) -> float:
    """Where the authors' re-centring puts the centre of mass: ``k//2 + 0.5·(1 − k mod 2)``, i.e. the
    centre pixel ``k // 2`` for odd sizes and half a pixel *after* it for even ones (32.5 for 64;
    their ``kernel_shift`` with scale factor 1)."""
    return size // 2 + 0.5 * (1 - size % 2)


def recenter_spline(kernel: Tensor) -> Tensor:
    """The authors' re-centring: shift each kernel's centre of mass to :func:`spline_target` by
    :func:`spline_shift` (no clipping, no renormalisation)."""
    h, w = kernel.shape[-2:]
    target = torch.tensor([spline_target(h), spline_target(w)], device=kernel.device, dtype=kernel.dtype)
    return spline_shift(kernel, target - center_of_mass(kernel))
