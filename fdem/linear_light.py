"""Linear light: a camera blurs light, before its tone curve (the sRGB transfer function, IEC 61966-2-1).

Photographs store ``srgb(light)``; the blur ``y = k ⊛ x`` holds for ``light``, not for the stored
values, and a clipped lamp's streak is far brighter in light than its encoded value says. With
``CanvasSpec.linear_light`` the sampler sees ``to_linear(y)`` and its result is encoded back with
:func:`to_srgb`. The noise level changes with the curve's slope, which varies across the image: the
sampler is given one σ, the root-mean-square slope of the curve over the image times the encoded σ
(docs/design.md §18). The score prior was trained on encoded images: in linear light it sees darker
images than it learnt, which is why this is an option, measured before it could become a default.
"""

from __future__ import annotations

import torch
from torch import Tensor

KNEE = 0.04045  # encoded value where the curve's linear toe ends
TOE_SLOPE = 12.92


def to_linear(encoded: Tensor) -> Tensor:
    """sRGB-encoded values in ``[0, 1]`` → linear light in ``[0, 1]``."""
    x = encoded.clamp(0, 1)
    return torch.where(x <= KNEE, x / TOE_SLOPE, ((x + 0.055) / 1.055) ** 2.4)


def to_srgb(light: Tensor) -> Tensor:
    """Linear light in ``[0, 1]`` → sRGB-encoded values (the inverse of :func:`to_linear`)."""
    x = light.clamp(0, 1)
    return torch.where(x <= KNEE / TOE_SLOPE, x * TOE_SLOPE, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def linear_sigma(encoded: Tensor, sigma: float | Tensor) -> Tensor:
    """``(B,)``: the noise level in linear light of images ``(B, C, H, W)`` whose encoded noise level is
    ``sigma``: σ times the root-mean-square slope of :func:`to_linear` at their pixels."""
    x = encoded.clamp(0, 1)
    slope = torch.where(x <= KNEE, torch.full_like(x, 1 / TOE_SLOPE), 2.4 / 1.055 * ((x + 0.055) / 1.055) ** 1.4)
    rms = slope.square().mean(dim=(1, 2, 3)).sqrt()
    sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
    return sigma * rms
