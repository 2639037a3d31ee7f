"""Photographs blurred four ways for the verdict-cell studies (``studies/verdict_cells``): one camera-shake
kernel, 3×3 fields with roll of two strengths, four independent kernels on a 2×2 grid; the photographs
resized, cut into cells of at least :data:`MIN_CELL` px, each cell's kernel by ``l0-anger``, and the
options every such study takes."""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

KERNEL = 33
MIN_CELL = 128  # px: the crops on which l0-anger's kernels were measured (docs/results.md)


def moments(kernels: Tensor) -> Tensor:
    """``(N, 2, 2)``: each ``(N, 1, k, k)`` kernel's second-moment matrix about its centre of mass (px²)."""
    from fdem.kernel_ops import normalize_kernel

    k = normalize_kernel(kernels.clamp_min(0))[:, 0]
    axis = torch.arange(k.shape[-1], dtype=k.dtype)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    dr = rows - (k * rows).sum((-2, -1))[:, None, None]
    dc = cols - (k * cols).sum((-2, -1))[:, None, None]
    entries = [(k * a * b).sum((-2, -1)) for a, b in ((dr, dr), (dr, dc), (dc, dr), (dc, dc))]
    return torch.stack(entries, dim=-1).reshape(-1, 2, 2)


def grey_cells(y: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(G, 1, h, w)``: the grey ``(1, C, H, W)`` image cut into the ``grid``'s cells, row-major."""
    rows, cols = grid
    h, w = y.shape[-2] // rows, y.shape[-1] // cols
    grey = y.mean(dim=1, keepdim=True)
    return torch.cat([grey[..., i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(rows) for j in range(cols)])


def cell_kernels(y: Tensor, grid: tuple[int, int]) -> Tensor:
    """``(G, 1, k, k)``: l0-anger's kernel estimated on each cell of the grey image, separately."""
    from fdem.baselines.l0_anger import L0Params, estimate_kernel_l0

    return estimate_kernel_l0(grey_cells(y, grid), KERNEL, L0Params())


def cases(index: int, frame: tuple[int, int]) -> dict[str, tuple[Tensor, tuple[int, int]]]:
    """The four blurs of image ``index``: name → (field ``(1, M, k, k)``, its grid)."""
    from kernels_gen.camera_shake import CameraShake
    from kernels_gen.field import CameraShakeField

    one = CameraShake(KERNEL).sample(1, 100 + index).reshape(1, 1, KERNEL, KERNEL)
    return {
        "one kernel": (one.expand(1, 9, KERNEL, KERNEL), (3, 3)),
        "roll 6-16 px": (CameraShakeField(KERNEL, (3, 3), frame).sample(1, 100 + index), (3, 3)),
        "roll 16-24 px": (CameraShakeField(KERNEL, (3, 3), frame, roll_px=(16, 24)).sample(1, 100 + index), (3, 3)),
        "4 independent kernels": (CameraShake(KERNEL).sample(4, 500 + 4 * index).reshape(1, 4, KERNEL, KERNEL), (2, 2)),
    }


def resized(path, side: int) -> Tensor:
    """The photograph at ``path`` as ``(1, 3, H, W)`` with its long side resized to ``side``."""
    import torch.nn.functional as F

    from fdem.imageio import load_image

    x = load_image(path)[None]
    return F.interpolate(x, scale_factor=side / max(x.shape[-2:]), mode="bilinear", antialias=True).clamp(0, 1)


def cell_grid(frame: tuple[int, int]) -> tuple[int, int]:
    """Cells of at least :data:`MIN_CELL` px, at most 3 a side."""
    return tuple(max(1, min(3, side // MIN_CELL)) for side in frame)


def study_parser(doc: str) -> argparse.ArgumentParser:
    """The options every cell study takes: sharp photographs to blur (or blurred photos), how many, their size."""
    p = argparse.ArgumentParser(description=doc.splitlines()[0])
    p.add_argument("--images", help="sharp photographs to blur four ways (or --photos)")
    p.add_argument("--count", type=int, default=16)
    p.add_argument("--side", type=int, default=384, help="long side the photographs are resized to")
    p.add_argument("--photos", help="score these blurred photographs instead (no ground truth), one row per photo")
    return p


def blurred_cases(folder: str, count: int, side: int, sigma: float = 5 / 255):
    """For each of the first ``count`` photographs of ``folder`` (resized to ``side``) and each blur of
    :func:`cases`: ``(index, blur name, y (1, 3, H, W) with noise σ, the field (1, M, k, k), the cell grid)``."""
    import torch.nn.functional as F

    from fdem.imageio import list_images
    from fdem.kernel_field import scene_field_blur

    pad = KERNEL // 2
    for index, path in enumerate(list_images(folder)[:count]):
        x = resized(path, side)
        frame = tuple(x.shape[-2:])
        scene = F.pad(x, (pad,) * 4, mode="reflect")
        noise = torch.Generator().manual_seed(index)
        for name, (field, field_grid) in cases(index, frame).items():
            y = scene_field_blur(scene, field, field_grid, ((pad, pad), frame))[..., pad:pad + frame[0], pad:pad + frame[1]]
            yield index, name, (y + sigma * torch.randn(y.shape, generator=noise)).clamp(0, 1), field, cell_grid(frame)
