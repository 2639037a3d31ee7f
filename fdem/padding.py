"""Images of any size for a UNet that takes multiples of ``2^(levels−1)``: reflect-pad, then crop back.

The forward model stays the circular convolution of docs/design.md §1, on the padded canvas: an
image that already is a multiple (e.g. a 256×256 benchmark observation made by circular blur) is
processed exactly; for other sizes the reflected margin takes the wrap-around, and a photograph
blurred by a real (non-circular) camera may show mild artefacts within a kernel radius of its border.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def network_multiple(net: nn.Module) -> int:
    """Image sides the UNet accepts are multiples of this (1 for a network without an ADM config)."""
    cfg = getattr(net, "cfg", None)
    return 2 ** (len(cfg.channel_mult) - 1) if cfg is not None else 1


def _mirror_index(size: int, before: int, after: int) -> Tensor:
    """Indices of a symmetric (edge not repeated) extension of ``range(size)``, any width."""
    idx = torch.arange(-before, size + after)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def reflect_pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` to multiples of ``multiple``; returns it and the (top, left) offset.

    A margin wider than the image keeps mirroring (mirror tiling), so tiny images work too.
    """
    offsets = []
    for dim in (-2, -1):
        size = x.shape[dim]
        total = (-size) % multiple
        first = total // 2
        x = x.index_select(dim, _mirror_index(size, first, total - first).to(x.device))
        offsets.append(first)
    return x, (offsets[0], offsets[1])


def border_pad(x: Tensor, margin: int, multiple: int = 1) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` by at least ``margin`` on every side, up to multiples of ``multiple``.

    Why: the forward model is circular, a photograph is not periodic. With a margin of the kernel's
    radius the wrap-around of the circular blur falls in the reflected border, which is cropped
    away afterwards (:func:`crop`), so the restored photo has no artefacts from its opposite edge.
    Returns the padded image and the (top, left) offset of the original.
    """
    offsets = []
    for dim in (-2, -1):
        size = x.shape[dim]
        total = 2 * margin + (-(size + 2 * margin)) % multiple
        first = total // 2
        x = x.index_select(dim, _mirror_index(size, first, total - first).to(x.device))
        offsets.append(first)
    return x, (offsets[0], offsets[1])


def smooth_pad(x: Tensor, margin: int, multiple: int = 1) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` by at least ``margin`` per side, up to multiples of ``multiple``, with a
    smooth periodisation: along each axis the pad runs from the last row (column) to the first with
    raised-cosine weights, so the canvas is periodic without a jump and the pad has almost no
    gradient. Why not a reflection: a mirrored blurry image is blurred by the *mirrored* kernel,
    which misleads a blind kernel estimate over the whole margin; a smooth pad holds next to no
    evidence about the kernel either way. Returns the canvas and the (top, left) offset of ``x``.
    """
    offsets = []
    for dim in (-2, -1):
        size = x.shape[dim]
        total = 2 * margin + (-(size + 2 * margin)) % multiple
        first = total // 2
        if total:
            t = (torch.arange(1, total + 1, dtype=x.dtype, device=x.device) / (total + 1)).mul(torch.pi / 2).sin().square()
            shape = [1] * x.ndim
            shape[dim] = total
            last, head = x.narrow(dim, size - 1, 1), x.narrow(dim, 0, 1)
            tail = last + (head - last) * t.view(shape)  # x[−1] → x[0]
            x = torch.cat([tail.narrow(dim, total - first, first), x, tail.narrow(dim, 0, total - first)], dim=dim)
        offsets.append(first)
    return x, (offsets[0], offsets[1])


def crop(x: Tensor, offset: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """The ``size = (H, W)`` window of ``x (..., H', W')`` at ``offset = (top, left)``: undoes a padding."""
    (top, left), (h, w) = offset, size
    return x[..., top:top + h, left:left + w]
