"""The kernel from clipped light streaks (fdem.light_streaks) and the ``streak`` kernel start."""

import torch

from fdem.kernel_ops import dirac, kernel_mse
from fdem.light_streaks import streak_kernel
from fdem.physics import blur
from fdem.presets import resolve
from fdem.problem import BlurProblem
from fdem.sampling.methods import alternation_kernel, initial_kernel
from kernels_gen.camera_shake import CameraShake


def _night(lamps, size=128, seed=0, kernel_seed=7):
    """A dim textured scene with lamps ``(row, col, peak)``, blurred by a camera-shake kernel and clipped."""
    kernel = CameraShake(33).sample(1, kernel_seed).reshape(1, 1, 33, 33)
    x = 0.3 * torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(seed))
    for r, c, peak in lamps:
        x[..., r, c] = peak
    return blur(x, kernel).clamp(0, 1), kernel


def test_isolated_streaks_give_the_kernel():
    y, truth = _night([(40, 40, 30.0), (90, 85, 15.0)])
    kernel, found = streak_kernel(y, 33)
    assert found.tolist() == [True] and kernel.shape == (1, 1, 33, 33)
    assert abs(float(kernel.sum()) - 1) < 1e-5
    assert kernel_mse(kernel, truth) < 0.1 * kernel_mse(dirac(1, 33), truth)


def test_no_streak_without_clipped_lamps_or_with_only_crowded_or_large_ones():
    dark, _ = _night([])
    crowded, _ = _night([(60, 60, 30.0), (64, 70, 30.0)])  # each lamp's box holds the other's light
    sky = torch.full((1, 3, 96, 96), 0.2)
    sky[..., :40, :] = 1.0  # a clipped region larger than the kernel is not a lamp
    for y in (dark, crowded, sky):
        kernel, found = streak_kernel(y, 33)
        assert found.tolist() == [False] and float(kernel.abs().sum()) == 0


def test_the_streak_start_uses_the_streaks_or_falls_back_to_the_alternation():
    lit, _ = _night([(40, 40, 30.0), (90, 85, 15.0)])
    dark, _ = _night([], seed=1)
    spec = resolve("fastem-pigdm", "photo", kernel_init="streak", kernel_size=33)
    problem = BlurProblem(torch.cat([lit, dark]), 5 / 255)
    start = initial_kernel(problem, spec, None)
    assert torch.allclose(start[0], streak_kernel(lit, 33)[0][0])
    assert torch.allclose(start[1], alternation_kernel(BlurProblem(dark, 5 / 255), spec)[0], atol=1e-6)
