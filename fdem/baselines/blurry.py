"""``blurry``: the observation itself with a Dirac kernel, the reference row of a benchmark table.

A method's gain is only meaningful against doing nothing: this row gives the blurry input's PSNR
and the kernel MSE of a Dirac (the blind methods' starting point) on the same problems.
"""

from __future__ import annotations

import torch

from fdem.kernel_ops import check_kernel_size, dirac
from fdem.restorer_base import Restoration, Restorer


class BlurryInput(Restorer):
    """Returns ``y`` clipped to ``[0, 1]`` and a ``kernel_size`` Dirac per image."""

    def __init__(self, method: str, device: torch.device | str = "cpu", kernel_size: int = 33):
        super().__init__(method, device)
        check_kernel_size(kernel_size, method)
        self.kernel_size = kernel_size

    def params(self) -> dict:
        return {"kernel_size": self.kernel_size}

    def _restore(self, y, sigma, kernel, seed, callback) -> Restoration:
        return Restoration(y.clamp(0, 1), dirac(y.shape[0], self.kernel_size).to(y))
