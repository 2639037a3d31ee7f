"""Does the blur left in an image deconvolved with *one* kernel tell blur that varies across the frame?

Where one kernel is right, the deconvolved cell is sharp and a blind kernel estimate on it is near a Dirac;
where the cell's own blur differs (more of it, or another direction), some blur is left and the estimate
spreads. Unlike kernels estimated on the blurry cells (:mod:`studies.verdict_cells.blind_cells`), this asks a
per-cell yes/no question of a near-sharp image. Here the one kernel is l0-anger's on the whole image (blind,
as a user would have it) or the centre cell's true kernel (``--oracle``); the frame, smoothly padded, is
Wiener-deconvolved with it; l0-anger's kernel on each grey cell gives the cell's *residual radius* (the RMS
radius about its centre of mass, px). Per image: the largest minus the smallest cell's radius. The same four
blurs of BSDS500 photographs as ``blind_cells`` (384 px, σ = 5/255); median and range over images.

    python -m studies.verdict_cells.residual_blur --images ../shared/data/bsds500/val --count 16
    python -m studies.verdict_cells.residual_blur --photos ../shared/data/real_blur
"""

from __future__ import annotations

import torch
from torch import Tensor

from studies.common import run_script
from studies.common.blur_cells import KERNEL, blurred_cases, cell_grid, moments, resized, study_parser


def radius(kernels: Tensor) -> Tensor:
    """``(N,)``: the RMS radius (px) of each ``(N, 1, k, k)`` kernel about its centre of mass."""
    return moments(kernels).diagonal(dim1=-2, dim2=-1).sum(-1).clamp_min(0).sqrt()


def deconvolved(y: Tensor, kernel: Tensor, sigma: float) -> Tensor:
    """``y (1, C, H, W)`` Wiener-deconvolved with ``kernel (1, 1, k, k)`` on a smoothly periodised canvas."""
    from fdem.padding import crop, smooth_pad
    from fdem.physics import wiener_deconv

    canvas, offset = smooth_pad(y, kernel.shape[-1])
    return crop(wiener_deconv(canvas, kernel, sigma), offset, tuple(y.shape[-2:])).clamp(0, 1)


def residual_radii(y: Tensor, kernel: Tensor, sigma: float, grid: tuple[int, int]) -> Tensor:
    """Each cell's residual radius after deconvolving ``y`` with ``kernel`` (module notes)."""
    from studies.common.blur_cells import cell_kernels

    return radius(cell_kernels(deconvolved(y, kernel, sigma), grid))


def whole_kernel(y: Tensor) -> Tensor:
    """l0-anger's kernel on the whole grey frame."""
    from fdem.baselines.l0_anger import L0Params, estimate_kernel_l0

    return estimate_kernel_l0(y.mean(dim=1, keepdim=True), KERNEL, L0Params())


def main(argv: list[str] | None = None) -> None:
    from fdem.imageio import list_images

    p = study_parser(__doc__)
    p.add_argument("--oracle", action="store_true", help="deconvolve with the centre cell's true kernel")
    p.add_argument("--sigma", type=float, default=5.0, help="noise level, 255 scale")
    args = p.parse_args(argv)
    sigma = args.sigma / 255
    if args.photos:
        print("| photo | cells | residual radii (px) | spread |")
        print("|---|---|---|---|")
        for path in list_images(args.photos):
            y = resized(path, args.side)
            grid = cell_grid(tuple(y.shape[-2:]))
            radii = residual_radii(y, whole_kernel(y), sigma, grid)
            print(f"| {path.name} | {grid[0]}x{grid[1]} | {' '.join(f'{r:.1f}' for r in radii.tolist())} | "
                  f"{float(radii.max() - radii.min()):.2f} |", flush=True)
        return
    found: dict[str, list[float]] = {}
    for _, name, y, field, grid in blurred_cases(args.images, args.count, args.side, sigma):
        kernel = field[:, field.shape[1] // 2, None] if args.oracle else whole_kernel(y)
        radii = residual_radii(y, kernel, sigma, grid)
        found.setdefault(name, []).append(float(radii.max() - radii.min()))
    print(f"{args.count} images ({'the centre cell' if args.oracle else 'l0-anger'}'s kernel), the cells' "
          "residual-radius spread (px), median [min, max] over images\n")
    print("| blur | spread |")
    print("|---|---|")
    for name, values in found.items():
        print(f"| {name} | {torch.tensor(values).median():.2f} [{min(values):.2f}, {max(values):.2f}] |")


if __name__ == "__main__":
    run_script(main)
