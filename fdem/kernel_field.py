"""Blur that varies across the frame: the product-convolution model (docs/design.md §19).

A kernel field holds ``M = G·H`` kernels on a ``G × H`` grid of cells over the image. Smooth windows
``w_m ≥ 0`` with ``Σ_m w_m = 1`` at every pixel blend them::

    y = A x = Σ_m k_m ⊛ (w_m ⊙ x),        Aᵀ v = Σ_m w_m ⊙ (k̃_m ⊛ v)

(``k̃`` the flipped kernel: correlation). Each pixel is blurred by a smooth mixture of the kernels of
the cells around it; with one cell, or with all kernels equal, ``A`` is the uniform blur ``k ⊛ x``
exactly (the windows sum to one). The windows are separable: along each axis, 1 before the first
cell's centre and after the last one's, and between two neighbouring centres the raised-cosine pair
``cos²(πt/2)``, ``sin²(πt/2)`` (a partition of unity with a continuous derivative). The grid is laid on
a ``region`` of the canvas (the image inside a padded canvas), so a field found on a canvas is the
field of the image. Convolutions are circular, by FFT on the canvas, batched over the cells.
"""

from __future__ import annotations

import math
import re

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.physics import psf2otf

MAX_GRID = 8  # cells per side: each costs one FFT per operator application


def parse_grid(value, name: str = "kernel_grid") -> tuple[int, int]:
    """``"3x3"``, ``"2x3"``, ``[3, 3]`` or ``3`` (square) as ``(G, H)`` with ``1 ≤ G, H ≤ MAX_GRID``; else
    an :class:`InputError` naming ``name``."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", value) or re.fullmatch(r"\s*(\d+)\s*", value)
        if match is None:
            raise InputError(f"{name} must be GxH (e.g. 3x3), got {value!r}")
        value = tuple(int(v) for v in match.groups())
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) not in (1, 2):
        raise InputError(f"{name} must be GxH (e.g. 3x3), got {value!r}")
    value = tuple(value) if len(value) == 2 else (value[0], value[0])
    if any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= MAX_GRID for v in value):
        raise InputError(f"{name}: both sides must be integers in [1, {MAX_GRID}], got {value!r}")
    return value


def axis_weights(length: int, cells: int, start: int = 0, span: int | None = None) -> Tensor:
    """``(cells, length)`` raised-cosine weights along one axis, summing to 1 at every position; the
    cells split ``[start, start + span)`` evenly (default: the whole axis)."""
    span = length if span is None else span
    position = torch.arange(length, dtype=torch.float64) + 0.5
    centres = start + (torch.arange(cells, dtype=torch.float64) + 0.5) * span / cells
    weights = torch.zeros(cells, length, dtype=torch.float64)
    if cells == 1:
        return weights + 1
    weights[0] = (position <= centres[0]).double()
    weights[-1] = (position >= centres[-1]).double()
    for g in range(cells - 1):
        t = ((position - centres[g]) / (centres[g + 1] - centres[g]))
        inside = (t > 0) & (t < 1)
        weights[g] += torch.where(inside, torch.cos(math.pi * t / 2) ** 2, 0.0)
        weights[g + 1] += torch.where(inside, torch.sin(math.pi * t / 2) ** 2, 0.0)
    return weights


def field_windows(shape: tuple[int, int], grid: tuple[int, int], region: tuple[tuple[int, int], tuple[int, int]] | None = None,
                  like: Tensor | None = None) -> Tensor:
    """``(M, H, W)`` windows of a ``grid`` on a canvas of ``shape`` (cell ``m = g·H + h`` is row ``g``,
    column ``h``), laid on ``region = ((top, left), (height, width))`` (default: the whole canvas); in
    ``like``'s dtype and device."""
    (top, left), (height, width) = region or ((0, 0), shape)
    rows = axis_weights(shape[0], grid[0], top, height)
    cols = axis_weights(shape[1], grid[1], left, width)
    windows = (rows[:, None, :, None] * cols[None, :, None, :]).flatten(0, 1)
    return windows if like is None else windows.to(like)


def edge_taper(shape: tuple[int, int], width: int, like: Tensor | None = None) -> Tensor:
    """``(H, W)``: 0 on the canvas's edge rising as ``sin²`` to 1 at ``width`` px in, 1 inside (separable).
    Windowed data taken to 0 there has no jump where the FFT's periodic canvas wraps around."""
    ramps = []
    for length in shape:
        distance = torch.minimum(torch.arange(length, dtype=torch.float64) + 0.5, length - 0.5 - torch.arange(length, dtype=torch.float64))
        ramps.append(torch.sin(math.pi / 2 * (distance / max(width, 1)).clamp(max=1)) ** 2)
    taper = ramps[0][:, None] * ramps[1][None, :]
    return taper if like is None else taper.to(like)


def cell_centres(shape: tuple[int, int], grid: tuple[int, int]) -> list[tuple[float, float]]:
    """The ``M`` cell centres (row, column) of a ``grid`` on an image of ``shape``, cell-major."""
    return [((g + 0.5) * shape[0] / grid[0], (h + 0.5) * shape[1] / grid[1]) for g in range(grid[0]) for h in range(grid[1])]


def cell_support(length: int, cells: int, index: int) -> tuple[int, int]:
    """``[start, stop)`` of cell ``index``'s window along an axis of ``length`` split into ``cells`` (from
    the previous cell's centre to the next one's: where :func:`axis_weights` is non-zero)."""
    centre = lambda g: (g + 0.5) * length / cells  # noqa: E731
    start = 0 if index == 0 else math.floor(centre(index - 1))
    stop = length if index == cells - 1 else math.ceil(centre(index + 1))
    return start, stop


def windowed_spectra(u: Tensor, windows: Tensor) -> Tensor:
    """``F(w_m ⊙ u)`` for every cell: ``u (…, C, H, W)`` → ``(…, M, C, H, W//2 + 1)``."""
    return torch.fft.rfft2(u.unsqueeze(-4) * windows[:, None])


def cell_axis(otf: Tensor, like: Tensor) -> Tensor:
    """The field's OTF ``(B, M, H, W')`` broadcast against ``(B, [n,] M, C, H, W')``."""
    otf = otf.unsqueeze(2)  # (B, M, 1, H, W')
    return otf.unsqueeze(1) if like.dim() == 6 else otf


def blend(cell_images: Tensor, windows: Tensor) -> Tensor:
    """``Σ_m w_m ⊙ v_m`` of ``cell_images (…, M, C, H, W)``."""
    return (cell_images * windows[:, None]).sum(dim=-4)


def blurred_spectrum(u: Tensor, otf: Tensor, windows: Tensor) -> Tensor:
    """``F(A u) = Σ_m K_m·F(w_m ⊙ u)`` of ``u (B, [n,] C, H, W)`` given the cells' OTFs ``(B, M, H, W')``."""
    spectra = windowed_spectra(u, windows)
    return (cell_axis(otf, spectra) * spectra).sum(dim=-4)


def adjoint_of_spectrum(spectrum: Tensor, otf: Tensor, windows: Tensor) -> Tensor:
    """``Aᵀ v = Σ_m w_m ⊙ F⁻¹[conj(K_m)·V]`` of ``v`` given by its spectrum ``(B, [n,] C, H, W')``."""
    spectrum = spectrum.unsqueeze(-4)
    return blend(torch.fft.irfft2(cell_axis(otf, spectrum).conj() * spectrum, s=windows.shape[-2:]), windows)


def field_blur(x: Tensor, field: Tensor, windows: Tensor) -> Tensor:
    """``A x = Σ_m k_m ⊛ (w_m ⊙ x)`` of ``x (B, C, H, W)`` with a field ``(B or 1, M, k, k)``, circular."""
    return torch.fft.irfft2(blurred_spectrum(x, psf2otf(field, x.shape[-2:]), windows), s=x.shape[-2:])


def field_blur_adjoint(v: Tensor, field: Tensor, windows: Tensor) -> Tensor:
    """``Aᵀ v = Σ_m w_m ⊙ (k̃_m ⊛ v)`` of ``v (B, C, H, W)``, circular."""
    return adjoint_of_spectrum(torch.fft.rfft2(v), psf2otf(field, v.shape[-2:]), windows)


def scene_field_blur(scene: Tensor, field: Tensor, grid: tuple[int, int], frame: tuple[tuple[int, int], tuple[int, int]]) -> Tensor:
    """``scene (B, C, H, W)`` blurred through a field ``(B, M, k, k)`` whose ``grid`` is laid on the ``frame``
    (``((top, left), (height, width))``) inside it: a camera's blur of the scene around its frame."""
    return field_blur(scene, field, field_windows(tuple(scene.shape[-2:]), grid, frame, like=scene))
