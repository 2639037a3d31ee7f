"""Can kernels estimated blind in each cell, from the blurry image alone, tell blur that varies across
the frame from one blur? ``l0-anger``'s kernel estimation on each cell of a grid (cells of at least
128 px, at most 3×3), on BSDS500 photographs resized to 384 px on the long side, blurred (scene blur,
σ = 5/255) four ways: one camera-shake kernel; a 3×3 camera-shake field with roll (the corner
travelling 6–16 px, ``kernels_gen/field.py``); the same with 16–24 px; four independent kernels on a
2×2 grid (as different as blur gets). Printed: the median and range, over images, of three statistics of
the cells' kernels (the largest relative ℓ2 distance of a centred cell kernel from the cells' mean;
the largest distance of a cell's second-moment matrix from the mean one, over its trace + 1 px²; the
orientation coherence of the cells' elongations, 1 when all point the same way; the largest kernel MSE
between two cells relative to a Dirac's), the last also of the true kernels, and the cells' kernel
error against the truth relative to a Dirac's. A statistic that separates the cases has ranges
that do not overlap.

    python -m studies.verdict_cells.blind_cells --images ../shared/data/bsds500/val --count 16

With ``--photos DIR`` it scores real blurred photographs instead (resized to ``--side``), one row each:
the pairwise statistic of their cells' kernels.
"""

from __future__ import annotations

import torch
from torch import Tensor

from studies.common import run_script
from studies.common.blur_cells import KERNEL, blurred_cases, cell_grid, cell_kernels, moments, resized, study_parser


def statistics(kernels: Tensor) -> dict[str, float]:
    """The three disagreement statistics of one image's cell kernels ``(G, 1, k, k)``."""
    from fdem.kernel_ops import normalize_kernel, recenter

    centred = recenter(normalize_kernel(kernels))
    mean = centred.mean(0, keepdim=True)
    l2 = ((centred - mean).flatten(1).norm(dim=1) / mean.flatten(1).norm(dim=1)).max()
    second = moments(kernels)
    average = second.mean(0)
    spread = ((second - average).flatten(1).norm(dim=1) / (average.trace() + 1)).max()
    values, vectors = torch.linalg.eigh(second)
    elongation = (values[:, 1] - values[:, 0]) / (values.sum(1) + 1)
    angle = 2 * torch.atan2(vectors[:, 1, 1], vectors[:, 0, 1])
    doubled = torch.stack([elongation * angle.cos(), elongation * angle.sin()], 1)
    coherence = doubled.mean(0).norm() / elongation.mean().clamp_min(1e-9)
    return {"l2 spread": float(l2), "moment spread": float(spread), "coherence": float(coherence),
            "pair / Dirac's": pair_distance(kernels)}


def pair_distance(kernels: Tensor) -> float:
    """The largest kernel MSE between two cells' kernels, over the mean of their MSEs from a Dirac (the
    benchmark's kernel error, in units of "no kernel at all")."""
    from fdem.kernel_ops import dirac, kernel_mse

    point = dirac(1, kernels.shape[-1], dtype=kernels.dtype)
    from_point = kernel_mse(point.expand_as(kernels), kernels)
    return max(float(kernel_mse(kernels[i:i + 1], kernels[j:j + 1])[0] / (0.5 * (from_point[i] + from_point[j])))
               for i in range(len(kernels)) for j in range(i + 1, len(kernels)))


def score_photos(folder: str, side: int) -> None:
    """One table row per photograph of ``folder``: its grid and the pairwise statistic of its cells' kernels."""
    from fdem.imageio import list_images

    print("| photo | cells | pair / Dirac's |")
    print("|---|---|---|")
    for path in list_images(folder):
        y = resized(path, side)
        grid = cell_grid(tuple(y.shape[-2:]))
        print(f"| {path.name} | {grid[0]}x{grid[1]} | {pair_distance(cell_kernels(y, grid)):.2f} |")


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import dirac, kernel_mse

    p = study_parser(__doc__)
    args = p.parse_args(argv)
    if not (args.images or args.photos):
        p.error("give --images (sharp photographs) or --photos (blurred ones)")
    if args.photos:
        return score_photos(args.photos, args.side)
    found: dict[str, dict[str, list[float]]] = {}
    for _, name, y, field, grid in blurred_cases(args.images, args.count, args.side):
        kernels = cell_kernels(y, grid)
        row = found.setdefault(name, {})
        for stat, value in statistics(kernels).items():
            row.setdefault(stat, []).append(value)
        row.setdefault("true pair / Dirac's", []).append(pair_distance(field[0, :, None]))
        if name == "one kernel":
            truth = field[:, :1]
            relative = kernel_mse(kernels, truth) / kernel_mse(dirac(1, KERNEL), truth)
            row.setdefault("cell error / Dirac's", []).extend(relative.tolist())
    stats = list(found["one kernel"])
    print(f"{args.count} images, median [min, max] over images (the error: over cells)\n")
    print("| blur | " + " | ".join(stats) + " |")
    print("|---|" + "---|" * len(stats))
    for name, row in found.items():
        cells = [f"{torch.tensor(row[s]).median():.2f} [{min(row[s]):.2f}, {max(row[s]):.2f}]" if s in row else "–" for s in stats]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    run_script(main)
