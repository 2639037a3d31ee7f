"""The diffusion methods on images of any size: pad (:mod:`fdem.padding`), maybe tile the network
(:mod:`fdem.sampling.tiled`), run, crop back.

``margin = 0`` pads only to the UNet's multiple, so an observation made by circular blur at a
multiple (a benchmark's) is processed exactly; a photograph wants ``margin`` ≥ the kernel radius
(:func:`fdem.padding.border_pad`).
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from fdem.padding import border_pad, crop, network_multiple, smooth_pad
from fdem.sampling.methods import run_method
from fdem.sampling.result import SamplingResult
from fdem.sampling.tiled import Tiling


PADDINGS = {"reflect": border_pad, "smooth": smooth_pad}


def run_padded(net: nn.Module, y: Tensor, sigma: float | Tensor, method: str, *, margin: int = 0,
               padding: str = "reflect", impute: bool = False, tiling: Tiling | None = None,
               **options) -> SamplingResult:
    """:func:`~fdem.sampling.methods.run_method` on ``y (B, C, H, W)`` of any size (pad, run, crop);
    ``padding`` fills the ``margin`` (and the rest up to the UNet's multiple): ``"reflect"``
    (:func:`~fdem.padding.border_pad`) or ``"smooth"`` (:func:`~fdem.padding.smooth_pad`);
    ``impute`` makes the padding only a start: the padded pixels are missing data, refilled by the
    model every step (:meth:`~fdem.problem.BlurProblem.impute`). With ``tiling`` the network runs
    on tiles when the padded image is larger than one."""
    size = tuple(y.shape[-2:])
    padded, offset = PADDINGS[padding](y, margin, network_multiple(net))
    if tiling is not None:
        net = tiling.wrap(net, *padded.shape[-2:])
    if impute:
        options["observed"] = crop_mask(padded, offset, size)
    result = run_method(method, net, padded, sigma, **options)
    trace = result.trace and replace(result.trace, x0=crop(result.trace.x0, offset, size))
    return replace(result, image=crop(result.image, offset, size), particles=crop(result.particles, offset, size),
                   trace=trace)


def crop_mask(canvas: Tensor, offset: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """``(1, 1, H', W')`` mask of ``canvas``: 1 on the ``size`` window at ``offset``, 0 on the padding."""
    mask = canvas.new_zeros((1, 1) + tuple(canvas.shape[-2:]))
    crop(mask, offset, size).fill_(1)  # a view of the window
    return mask
