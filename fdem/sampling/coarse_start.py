"""A coarse-to-fine kernel start (``kernel_init: coarse``, docs/design.md §14).

Large kernels on small images are where Fast EM's kernel fails (studies/deblur_check/NOTES.md): at
half size the same blur spans half the pixels, the image has relatively more evidence per kernel
tap, and the network calls cost a quarter. The start runs Fast EM on the observation averaged over
2×2 blocks (noise σ/2), with a kernel of half the size started from the alternation's, and enlarges
its kernel back: sample ``u`` of the full kernel is the half kernel at ``u/2`` (centres aligned),
bilinear. Pixels the average cannot fill (a margin that is not observed, or padding to the
network's multiple) are missing data, imputed as the full-size margin is.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import Tensor

from fdem.kernel_ops import normalize_kernel
from fdem.problem import BlurProblem


def half_problem(problem: BlurProblem, multiple: int) -> BlurProblem:
    """``problem``'s measured observation averaged over 2×2 blocks, σ halved, padded to ``multiple``;
    a block with an unobserved pixel, and the padding, are unobserved."""
    y = F.avg_pool2d(problem.measured, 2)
    seen = torch.ones_like(problem.measured[:, :1]) if problem.observed is None else problem.observed
    observed = (F.avg_pool2d(seen.expand(y.shape[0], 1, -1, -1), 2) > 1 - 1e-6).to(y.dtype)
    h, w = y.shape[-2:]
    pad = (0, -w % multiple, 0, -h % multiple)
    y, observed = F.pad(y, pad, mode="replicate"), F.pad(observed, pad)
    return BlurProblem(y, problem.sigma / 2, observed)


def enlarge_kernel(kernel: Tensor, size: int) -> Tensor:
    """A ``(B, 1, h, h)`` kernel drawn at twice its scale on ``size × size`` (``size = 2h − 1``: centres
    aligned, bilinear), normalised to sum 1."""
    return normalize_kernel(F.interpolate(kernel, size=(size, size), mode="bilinear", align_corners=True).clamp_min(0))


def half_size(kernel_size: int) -> int:
    """The coarse kernel's side: odd, with ``2·half − 1`` at least ``kernel_size``."""
    return (kernel_size + 1) // 2 | 1


def coarse_kernel(spec, problem: BlurProblem, multiple: int, run_pass) -> Tensor:
    """The enlarged kernel of one Fast EM pass at half size (``run_pass(problem, spec)`` runs it and
    returns its kernel; ``multiple``: the network's side multiple), cropped to the run's kernel size."""
    size = spec.em.mstep.kernel_size
    half = half_size(size)
    coarse = replace(spec, em=replace(spec.em, mstep=replace(spec.em.mstep, kernel_size=half),
                                      kernel_init="alternation", passes=1, refine=False))
    kernel = enlarge_kernel(run_pass(half_problem(problem, multiple), coarse), 2 * half - 1)
    crop = (2 * half - 1 - size) // 2
    return normalize_kernel(kernel[..., crop:crop + size, crop:crop + size])
