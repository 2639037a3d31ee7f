"""The prior-free Wiener / M-step alternation moves the kernel toward the truth and sharpens the image."""

import torch

from fdem.baselines.alternation import wiener_alternation
from fdem.kernel_ops import dirac, kernel_mse, normalize_kernel
from fdem.physics import add_noise, blur


def test_alternation_improves_on_the_blurry_start():
    g = torch.Generator().manual_seed(0)
    sharp = torch.rand(1, 3, 8, 8, generator=g).repeat_interleave(8, -1).repeat_interleave(8, -2)
    truth = torch.zeros(1, 1, 9, 9)
    truth[0, 0, 4, 1:8] = 1.0
    truth = normalize_kernel(truth)
    y = add_noise(blur(sharp, truth), 0.01, generator=g)
    image, kernel, seconds = wiener_alternation(y, 0.01, kernel_size=9, rounds=10)
    assert kernel_mse(kernel, truth) < 0.5 * kernel_mse(dirac(1, 9), truth)
    assert ((image - sharp) ** 2).mean() < ((y - sharp) ** 2).mean()
    assert seconds > 0 and torch.allclose(kernel.sum(), torch.tensor(1.0))
