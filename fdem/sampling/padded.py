"""The diffusion methods on images of any size: reflect-pad to the UNet's multiple, run, crop back
(:mod:`fdem.padding`)."""

from __future__ import annotations

from dataclasses import replace

from torch import Tensor, nn

from fdem.padding import network_multiple, reflect_pad
from fdem.sampling.methods import run_method
from fdem.sampling.result import SamplingResult


def run_padded(net: nn.Module, y: Tensor, sigma: float | Tensor, method: str, **options) -> SamplingResult:
    """:func:`~fdem.sampling.methods.run_method` on ``y (B, C, H, W)`` of any size (pad, run, crop)."""
    h, w = y.shape[-2:]
    padded, (top, left) = reflect_pad(y, network_multiple(net))
    result = run_method(method, net, padded, sigma, **options)

    def crop(t: Tensor) -> Tensor:
        return t[..., top : top + h, left : left + w]

    trace = result.trace and replace(result.trace, x0=crop(result.trace.x0))
    return replace(result, image=crop(result.image), particles=crop(result.particles), trace=trace)
