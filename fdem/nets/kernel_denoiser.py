"""The Plug-and-Play kernel denoiser of the M-step (docs/design.md §4).

Five 3×3 convolutions (2→32, 3 × 32→32, 32→1) with ReLU in between. The input is the noisy
kernel and a constant map holding its noise level ``σ_d = √(λ/β)``. The paper asks for a
bias-free network: that is the default (then the network is positively homogeneous, ``D(a·u) =
a·D(u)``, so it treats kernels and noise levels at every scale alike). ``bias=True`` gives the
authors' released layout (``model.{0,2,4,6,8}.{weight,bias}``), which loads strictly.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import torch
from torch import Tensor, nn

from fdem.errors import InputError
from fdem.nets.checkpoints import mismatch_report, read_weights, shapes

SHIPPED_SIZES = (33, 64)
# PnP weight λ (β = 1e5) that goes with each shipped denoiser, tuned on the validation split of
# the Figure-4 benchmark at σ = 5–10/255 (`fdem kernel-bench --tune`: camera-shake 33×33 with
# configs/bench/kernel_estimation.yaml, motion 64×64 with kernel_estimation64.yaml). The authors'
# λ = 1 / 0.2 belongs to their own, differently trained network.
SHIPPED_LAMBDA = {33: 0.1, 64: 0.0178}


class KernelDenoiser(nn.Module):
    """``D([k, σ_d·1]) -> k̂``; ``residual=True`` predicts the noise and subtracts it instead."""

    def __init__(self, channels: int = 32, depth: int = 5, bias: bool = False, residual: bool = False):
        super().__init__()
        widths = [2] + [channels] * (depth - 1) + [1]
        layers: list[nn.Module] = []
        for i in range(depth):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 3, padding=1, bias=bias))
            if i < depth - 1:
                layers.append(nn.ReLU(inplace=True))
        self.model = nn.Sequential(*layers)
        self.residual = residual

    def forward(self, kernel: Tensor, noise_level: float | Tensor) -> Tensor:
        """Denoise ``kernel (B,1,k,k)`` at ``noise_level`` (a float or one value per kernel)."""
        level = torch.as_tensor(noise_level, dtype=kernel.dtype, device=kernel.device)
        level_map = level.reshape(-1, 1, 1, 1).expand(kernel.shape[0], 1, *kernel.shape[-2:])
        out = self.model(torch.cat([kernel, level_map], dim=1))
        return kernel - out if self.residual else out


def shipped_weights_path(size: int) -> Path:
    """Path of the denoiser trained here for ``size x size`` kernels (inside the package)."""
    return Path(str(resources.files("fdem.nets") / "weights" / f"kernel_denoiser{size}.pt"))


def load_kernel_denoiser(size: int = 33, path: str | Path | None = None, device=None) -> KernelDenoiser:
    """Load the shipped bias-free denoiser for ``size`` (33 or 64), or a state_dict file at ``path``.

    The layout (bias or not, residual or not) is read from the file: a state_dict with
    ``model.0.bias`` is the authors' biased network. Loading is strict and ``weights_only``.
    """
    shipped = path is None
    if shipped:
        if size not in SHIPPED_SIZES:
            raise InputError(f"no shipped kernel denoiser for size {size}: choose one of {SHIPPED_SIZES} or pass a path")
        path = shipped_weights_path(size)
    state, _ = read_weights(path, "kernel denoiser weights")
    residual = bool(state.pop("residual").item()) if "residual" in state else False
    net = KernelDenoiser(bias="model.0.bias" in state, residual=residual)
    problems = mismatch_report(shapes(net), state)
    if problems:
        raise InputError(f"{path} is not a kernel denoiser state_dict: {problems}")
    net.load_state_dict(state, strict=True)
    net.recommended_lambda = SHIPPED_LAMBDA[size] if shipped else None  # read by fdem.mstep.default_lambda
    return net.to(device).eval().requires_grad_(False)


def denoiser_for_kernel(kernel_size: int, path: str | Path | None = None, device=None) -> KernelDenoiser:
    """The denoiser that the M-step uses for ``kernel_size`` kernels: the shipped 33 up to 48 px, the
    shipped 64 above (or the file at ``path``)."""
    return load_kernel_denoiser(33 if kernel_size <= 48 else 64, path=path, device=device)


def denoiser_state_for_export(net: KernelDenoiser) -> dict[str, Tensor]:
    """The state_dict written to disk: weights plus a ``residual`` flag so loading needs no config."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
    state["residual"] = torch.tensor(net.residual)
    return state
