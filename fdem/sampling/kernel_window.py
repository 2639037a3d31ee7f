"""Where a large photograph's kernel is estimated: the window of the most usable detail.

One kernel for the whole image needs far fewer pixels than the image has: a blind run on a window of
``kernel_window`` pixels a side, then a non-blind run on the whole image with its kernel, costs the
blind run's chains only on the window (docs/design.md §16). The window is the one with the most
gradient energy in the grey image (edges are what tells the kernel, Cho & Lee's observation), counted
on observed pixels only: with a saturation mask a window full of clipped lamps scores little.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import avg_pool2d


def window_size(side: int, height: int, width: int) -> tuple[int, int]:
    """The window of ``side`` on a ``height × width`` image (the short side kept where it is shorter)."""
    return min(side, height), min(side, width)


def gradient_energy(y: Tensor) -> Tensor:
    """``(B, 1, H, W)``: squared forward differences of ``y``'s grey level (0 on the last row and column)."""
    grey = y.mean(dim=1, keepdim=True)
    energy = torch.zeros_like(grey)
    energy[..., :-1, :] += (grey[..., 1:, :] - grey[..., :-1, :]) ** 2
    energy[..., :, :-1] += (grey[..., :, 1:] - grey[..., :, :-1]) ** 2
    return energy


def best_windows(y: Tensor, size: tuple[int, int], seen: Tensor | None = None) -> list[tuple[int, int]]:
    """The ``(top, left)`` of each image's ``size`` window of most gradient energy on observed pixels
    (``seen``: the saturation mask, :func:`fdem.saturation.saturation_mask`; None: every pixel)."""
    energy = gradient_energy(y)
    if seen is not None:
        energy = energy * seen
    score = avg_pool2d(energy, size, stride=1)  # (B, 1, H - h + 1, W - w + 1)
    flat = score.flatten(1).argmax(dim=1).tolist()
    columns = score.shape[-1]
    return [divmod(i, columns) for i in flat]


def crop_windows(y: Tensor, corners: list[tuple[int, int]], size: tuple[int, int]) -> Tensor:
    """The windows of ``y (B, C, H, W)`` at ``corners`` (one per image), stacked: ``(B, C, h, w)``."""
    h, w = size
    return torch.stack([y[b, :, r:r + h, c:c + w] for b, (r, c) in enumerate(corners)])
