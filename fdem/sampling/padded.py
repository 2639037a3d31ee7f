"""The diffusion methods on images of any size: pad (:mod:`fdem.padding`) to a canvas the UNet takes,
run, crop back.

A :class:`~fdem.presets.CanvasSpec` with ``border="circular"`` pads only to the UNet's multiple, so an
observation made by circular blur at a multiple (a benchmark's) is processed exactly; the other
borders also pad by the kernel's radius, mirrored (``reflect``) or smoothly periodised (``smooth``),
and ``impute`` makes that margin missing data, refilled by the model every step
(:meth:`~fdem.problem.BlurProblem.impute`).
"""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor

from fdem.field_problem import FieldProblem
from fdem.padding import border_pad, crop, smooth_pad
from fdem.problem import BlurProblem
from fdem.sampling.result import SamplingResult

PADDINGS = {"circular": border_pad, "reflect": border_pad, "smooth": smooth_pad, "impute": smooth_pad}


def canvas_margin(border: str, kernel_size: int) -> int:
    """Pixels of border on each side: the kernel's radius, or 0 for the circular model."""
    return 0 if border == "circular" else kernel_size // 2


def padded_problem(y: Tensor, sigma, border: str, kernel_size: int, multiple: int,
                   seen: Tensor | None = None, grid: tuple[int, int] = (1, 1)) -> tuple[BlurProblem, tuple[int, int]]:
    """The :class:`~fdem.problem.BlurProblem` on ``y (B, C, H, W)``'s canvas and ``y``'s offset in it;
    unobserved: the margin (``impute``) and where ``seen`` (``(B, 1, H, W)``, :func:`fdem.saturation.saturation_mask`) is 0.
    A ``grid`` of more than one cell gives a :class:`~fdem.field_problem.FieldProblem` laid on ``y``'s place."""
    padded, offset = PADDINGS[border](y, canvas_margin(border, kernel_size), multiple)
    size = tuple(y.shape[-2:])
    observed = crop_mask(padded, offset, size) if border == "impute" else None
    if seen is not None:
        observed = padded.new_ones((1, 1) + tuple(padded.shape[-2:])) if observed is None else observed
        observed = observed.repeat(y.shape[0], 1, 1, 1)
        crop(observed, offset, size).mul_(seen)
    if grid != (1, 1):
        return FieldProblem(padded, sigma, observed, grid=grid, region=(offset, size)), offset
    return BlurProblem(padded, sigma, observed), offset


def cropped(result: SamplingResult, offset: tuple[int, int], size: tuple[int, int]) -> SamplingResult:
    """``result`` (images, particles and trace) cropped back to the ``size`` window at ``offset``."""
    trace = result.trace and replace(result.trace, x0=crop(result.trace.x0, offset, size))
    return replace(result, image=crop(result.image, offset, size), particles=crop(result.particles, offset, size),
                   trace=trace)


def crop_mask(canvas: Tensor, offset: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """``(1, 1, H', W')`` mask of ``canvas``: 1 on the ``size`` window at ``offset``, 0 on the padding."""
    mask = canvas.new_zeros((1, 1) + tuple(canvas.shape[-2:]))
    crop(mask, offset, size).fill_(1)  # a view of the window
    return mask
