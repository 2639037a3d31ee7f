"""``mprnet``: the supervised deblurring baseline (MPRNet, Zamir et al., CVPR 2021) as a restorer.

Blind and deterministic: one forward pass, no kernel estimate. ``weights=None`` uses the small
MPRNet shipped with fdem (``configs/mprnet_small.yaml``); a user file is the released
``model_deblurring.pth`` unless ``widths`` names the constructor arguments it was trained with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.restorer_base import Restoration, Restorer

WEIGHTS = Path(__file__).resolve().parent.parent / "nets" / "weights"
# The shipped network and its widths (must match configs/mprnet_small.yaml's model).
SHIPPED_MPRNET = (WEIGHTS / "mprnet_small.pt", dict(n_feat=24, scale_unetfeats=12, scale_orsnetfeats=8, num_cab=2))


class MPRNetRestorer(Restorer):
    """MPRNet on RGB or gray images of any size (reflect-padded to a multiple of 8 by :meth:`MPRNet.restore`)."""

    seeded = False

    def __init__(self, method: str, device: torch.device | str = "cpu", weights: str | Path | None = None,
                 widths: dict | None = None):
        from fdem.nets.mprnet import load_mprnet

        super().__init__(method, device)
        if weights is None:
            weights, shipped_widths = SHIPPED_MPRNET
            if not weights.is_file():
                raise InputError(f"the shipped MPRNet {weights} is missing from this installation: pass a weights file")
            widths = widths or shipped_widths
        self.weights = str(weights)
        self.net = load_mprnet(weights, self.device, widths)

    def params(self) -> dict:
        return {"weights": Path(self.weights).name}

    @torch.no_grad()
    def _restore(self, y: Tensor, sigma, kernel: Tensor | None, seed: int | Sequence[int], callback) -> Restoration:
        if y.shape[1] not in (1, 3):
            raise InputError(f"mprnet restores RGB or gray images, got {y.shape[1]} channels")
        image = self.net.restore(y.expand(-1, 3, -1, -1))  # gray: run on three equal channels
        image = image.mean(dim=1, keepdim=True) if y.shape[1] == 1 else image
        if callback is not None:
            callback()
        return Restoration(image)

    def total_steps(self, size: tuple[int, int] | None = None) -> int:
        return 1
