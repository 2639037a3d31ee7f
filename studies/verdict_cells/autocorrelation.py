"""Can the blurry image's gradient autocorrelation per cell, with no kernel estimated at all, tell blur
that varies across the frame from one blur? The gradients of a natural image are close to white, so the
autocorrelation of a blurry cell's gradients is about the kernel's own autocorrelation ``k ⋆ k`` (the
idea behind spectral blind-kernel estimation); the noise's share (at lags 0 and ±1) is subtracted.
The same four blurs of BSDS500 photographs as :mod:`studies.verdict_cells.blind_cells` (384 px, σ = 5/255);
per image, the largest cosine distance between two cells' autocorrelations (``--lag`` px each way), and
the same of the true kernels' autocorrelations; median and range over images.

    python -m studies.verdict_cells.autocorrelation --images ../shared/data/bsds500/val --count 16
"""

from __future__ import annotations

import torch
from torch import Tensor

from studies.common import run_script
from studies.common.blur_cells import blurred_cases, cell_grid, grey_cells, resized, study_parser


def autocorrelation(cells: Tensor, lag: int, sigma: float) -> Tensor:
    """``(N, 2·lag+1, 2·lag+1)``: each grey ``(N, 1, h, w)`` cell's summed autocorrelation of its horizontal
    and vertical differences (per pixel), less the noise's (``2σ²`` at 0, ``−σ²`` at ±1 along each axis)."""
    total = 0
    for axis in (-1, -2):
        g = torch.diff(cells, dim=axis)
        g = g - g.mean(dim=(-2, -1), keepdim=True)
        corr = lags(g, lag) / g[0, 0].numel()
        corr[..., lag, lag] -= 2 * sigma**2
        if axis == -1:
            corr[..., lag, lag - 1] += sigma**2
            corr[..., lag, lag + 1] += sigma**2
        else:
            corr[..., lag - 1, lag] += sigma**2
            corr[..., lag + 1, lag] += sigma**2
        total = total + corr
    return total[:, 0]


def lags(x: Tensor, lag: int) -> Tensor:
    """``(..., 2·lag+1, 2·lag+1)``: the (unnormalised) autocorrelation of ``x (..., h, w)`` at lags up to
    ``lag`` each way, zero lag in the centre (padded by ``lag``, so no lag wraps onto another); of a kernel,
    what a white image's blurry gradients would show."""
    size = (x.shape[-2] + lag, x.shape[-1] + lag)
    corr = torch.fft.irfft2(torch.fft.rfft2(x, s=size).abs() ** 2, s=size)
    return torch.roll(corr, (lag, lag), dims=(-2, -1))[..., : 2 * lag + 1, : 2 * lag + 1]


def cosine_spread(maps: Tensor) -> float:
    """The largest ``1 − cos`` between two of the ``(N, a, a)`` maps."""
    flat = maps.flatten(1)
    flat = flat / flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return float((1 - flat @ flat.T).max())


def main(argv: list[str] | None = None) -> None:
    from fdem.imageio import list_images

    p = study_parser(__doc__)
    p.add_argument("--lag", type=int, default=16)
    p.add_argument("--sigma", type=float, default=5.0, help="noise level, 255 scale")
    args = p.parse_args(argv)
    sigma = args.sigma / 255
    if args.photos:
        for path in list_images(args.photos):
            y = resized(path, args.side)
            grid = cell_grid(tuple(y.shape[-2:]))
            print(f"| {path.name} | {grid[0]}x{grid[1]} | "
                  f"{cosine_spread(autocorrelation(grey_cells(y, grid), args.lag, sigma)):.3f} |")
        return
    found: dict[str, dict[str, list[float]]] = {}
    for _, name, y, field, grid in blurred_cases(args.images, args.count, args.side, sigma):
        row = found.setdefault(name, {"cells": [], "true": []})
        row["cells"].append(cosine_spread(autocorrelation(grey_cells(y, grid), args.lag, sigma)))
        row["true"].append(cosine_spread(lags(field[0], args.lag)))
    print(f"{args.count} images, median [min, max] over images\n")
    print("| blur | cells' spread | true kernels' spread |")
    print("|---|---|---|")
    for name, row in found.items():
        cells = [f"{torch.tensor(v).median():.3f} [{min(v):.3f}, {max(v):.3f}]" for v in row.values()]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_script(main)
