"""Saturated pixels: what a camera's clipping does to ``y = k ⊛ x + n``, and leaving them out of the data.

A lamp brighter than the sensor's range is clipped at 1 after the blur: the streak it draws is the
best trace of the kernel in a night photograph, but clipped it no longer equals ``k ⊛ x``, and no
``x`` in ``[0, 1]`` (the prior's range) explains the unclipped halo around it either. So a pixel at
or above ``threshold`` in any channel, and every pixel within a box of ``reach`` around one (1: the
clipped pixels alone, chosen on val: a box of the kernel's size costs the image more than its halo
misleads the kernel), is missing data: :func:`observed_mask` marks them 0 and
:class:`~fdem.problem.BlurProblem` treats them as it treats an imputed margin (refilled with
``k ⊛ x̂`` every step, left out of the M-step's and the guidance's data term: one mask for all
unobserved pixels, docs/design.md §15). :func:`add_point_lights` makes such scenes for the benchmark.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import max_pool2d

from fdem.errors import InputError


def observed_mask(y: Tensor, threshold: float, reach: int, name: str = "the image") -> Tensor:
    """``(B, 1, H, W)``: 0 within a ``reach`` box of a pixel of ``y (B, C, H, W)`` at or above
    ``threshold`` in any channel, 1 elsewhere. An image left with no observed pixel is an
    :class:`InputError` naming ``name``."""
    clipped = (y >= threshold).any(dim=1, keepdim=True).float()
    mask = 1 - max_pool2d(clipped, reach, stride=1, padding=reach // 2)[..., : y.shape[-2], : y.shape[-1]]
    if bool((mask.flatten(1).sum(dim=1) == 0).any()):
        raise InputError(f"{name}: every pixel is saturated (>= {threshold:g}) or within the mask's box around "
                         "one: nothing is left to estimate from; lower the exposure or pass --saturation off")
    return mask.to(y.dtype)


def saturation_mask(canvas, y: Tensor, name: str = "the image") -> Tensor | None:
    """The observed mask of ``y (B, C, H, W)`` under a :class:`~fdem.presets.CanvasSpec`'s ``saturation`` level
    and ``saturation_reach`` box (None: saturation off, every pixel is data)."""
    return None if canvas.saturation is None else observed_mask(y, canvas.saturation, canvas.saturation_reach, name)


def add_point_lights(scene: Tensor, count: int, margin: int, generator: torch.Generator,
                     gain: tuple[float, float] = (5.0, 20.0)) -> Tensor:
    """``scene (C, H, W)`` with ``count`` small bright lamps added (Gaussian spots of 0.7 px, a peak of
    ``gain`` × white drawn uniformly, slightly tinted), placed at least ``margin`` pixels inside the
    border: values far above 1 that a camera clips after the blur."""
    _, h, w = scene.shape
    if count <= 0 or min(h, w) <= 2 * margin:
        return scene
    rows = torch.arange(h, dtype=scene.dtype)[:, None]
    cols = torch.arange(w, dtype=scene.dtype)[None, :]
    lit = scene.clone()
    for _ in range(count):
        r = margin + torch.rand((), generator=generator) * (h - 1 - 2 * margin)
        c = margin + torch.rand((), generator=generator) * (w - 1 - 2 * margin)
        peak = gain[0] + torch.rand((), generator=generator) * (gain[1] - gain[0])
        tint = 0.8 + 0.2 * torch.rand(scene.shape[0], generator=generator)
        spot = torch.exp(-((rows - r) ** 2 + (cols - c) ** 2) / (2 * 0.7**2))
        lit += (peak * tint.to(scene.dtype))[:, None, None] * spot
    return lit
