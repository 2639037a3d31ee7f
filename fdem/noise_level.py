"""The noise level of a blurry image, estimated from the image itself (``fdem deblur`` without ``--sigma``).

Blur removes the high frequencies of the scene but not the sensor's noise, added after the blur: the
finest diagonal detail of a blurred image is mostly noise. :func:`estimate_noise` takes the diagonal
(HH) coefficients of the orthonormal 2×2 Haar transform, where white noise of level σ keeps level σ,
groups them in windows of 8×8 coefficients (16×16 pixels) and reads σ² from the *flattest* windows:
the 10 % quantile of the windows' mean square, divided by the same quantile of a χ²₆₄/64 variable
(what that quantile is for pure noise). Texture the blur left raises some windows, not the quantile;
2×2 blocks that touch a clipped pixel (saturated or black: no noise there) are left out of their
window's mean, and a window with fewer than :data:`MIN_SHARE` of its blocks is left out. 8-bit pixels
make the coefficients multiples of 1/510; a fixed (seeded) dither of one such step keeps the statistic
from stepping. Chosen on BSDS500 val against the median absolute deviation of all coefficients (which
reads 23 % high at σ = 2/255); measured on val and test, with and without JPEG, in docs/results.md.
JPEG removes fine detail and with it part of the noise, so on JPEG files it reads low.
"""

from __future__ import annotations

from statistics import NormalDist

import torch
from torch import Tensor
from torch.nn.functional import avg_pool2d

from fdem.errors import InputError

CLIP_MARGIN = 1.0 / 255  # a pixel this close to 0 or 1 is taken as clipped
STEP_8BIT = 1.0 / 510  # the spacing of HH coefficients of 8-bit pixels
WINDOW = 8  # HH coefficients per window side
QUANTILE = 0.1  # of the windows' mean squares
MIN_WINDOWS = 8  # fewer usable windows than this (in every channel) give no estimate
MIN_SHARE = 0.75  # a window is usable when this share of its 2×2 blocks has no clipped pixel


def haar_diagonal(y: Tensor) -> Tensor:
    """The HH coefficients ``(a − b − c + d) / 2`` of the 2×2 blocks of ``y (B, C, H, W)``: ``(B, C, H//2, W//2)``."""
    h, w = y.shape[-2] // 2 * 2, y.shape[-1] // 2 * 2
    blocks = y[..., :h, :w]
    return (blocks[..., 0::2, 0::2] - blocks[..., 0::2, 1::2] - blocks[..., 1::2, 0::2] + blocks[..., 1::2, 1::2]) / 2


def chi2_mean_quantile(q: float, dof: int) -> float:
    """The ``q`` quantile of ``χ²_dof / dof`` (Wilson–Hilferty: exact to 1e-3 at 64 degrees of freedom)."""
    a = 2 / (9 * dof)
    return (1 - a + NormalDist().inv_cdf(q) * a**0.5) ** 3


@torch.no_grad()
def estimate_noise(y: Tensor, name: str = "the image") -> Tensor:
    """σ of ``y (B, C, H, W)`` in ``[0, 1]`` units, ``(B,)``: the median over channels of each channel's
    estimate. An image with too few unclipped windows (mostly saturated or black, or smaller than
    about 64×64) is an :class:`InputError` naming ``name``."""
    if y.dim() != 4:
        raise InputError(f"{name}: need a (B, C, H, W) image to estimate its noise, got {tuple(y.shape)}")
    y = y.float()
    detail = haar_diagonal(y)
    dither = (torch.rand(detail.shape, generator=torch.Generator().manual_seed(0)) - 0.5) * STEP_8BIT
    inside = ((y > CLIP_MARGIN) & (y < 1 - CLIP_MARGIN)).float()[..., : 2 * detail.shape[-2], : 2 * detail.shape[-1]]
    blocks = (avg_pool2d(inside, 2) == 1).to(detail)  # 2×2 blocks with no clipped pixel
    share = avg_pool2d(blocks, WINDOW)  # (B, C, h, w): their share in each window
    energy = avg_pool2d((detail + dither.to(detail)) ** 2 * blocks, WINDOW) / share.clamp_min(1e-12)
    keep = share >= MIN_SHARE
    counts = keep.sum(dim=(-2, -1))  # (B, C)
    if min(energy.shape[-2:]) == 0 or bool((counts < MIN_WINDOWS).all(dim=1).any()):
        raise InputError(f"{name}: too few unclipped pixels (saturated, black or under 64x64) to estimate its "
                         "noise level: give --sigma")
    values = energy.masked_fill(~keep, float("nan")).flatten(-2)
    per_channel = values.nanquantile(QUANTILE, dim=-1) / chi2_mean_quantile(QUANTILE, WINDOW * WINDOW)
    per_channel = per_channel.masked_fill(counts < MIN_WINDOWS, float("nan")).sqrt()
    return per_channel.nanmedian(dim=1).values
