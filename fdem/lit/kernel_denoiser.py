"""Training of the Plug-and-Play kernel denoiser (Gaussian denoising of blur kernels)."""

from __future__ import annotations

import math

import lightning as L
import torch
from torch import Tensor

from fdem.kernel_ops import normalize_kernel
from fdem.nets.kernel_denoiser import KernelDenoiser


def random_dihedral(kernels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Apply one of the 8 flips/rotations to each kernel: blur kernels have no preferred orientation."""
    flips = torch.randint(0, 2, (3, kernels.shape[0], 1, 1, 1), generator=generator, device=kernels.device).bool()
    out = torch.where(flips[0], kernels.flip(-1), kernels)
    out = torch.where(flips[1], out.flip(-2), out)
    return torch.where(flips[2], out.transpose(-1, -2), out)


class KernelDenoiserModule(L.LightningModule):
    """Learns ``D(k + σn, σ) ≈ k`` for σ log-uniform in ``[sigma_min, sigma_max]``.

    The M-step hands the denoiser an estimate that was clipped at 0 and renormalised, so a fraction
    ``project_prob`` of the noisy training inputs gets that same projection (see :meth:`corrupt`).
    The loss is the MSE divided by the input's noise variance (every noise level weighs alike);
    validation logs the kernel MSE of the normalised output at fixed, seeded noise levels spread
    over the range.
    """

    def __init__(
        self,
        channels: int = 32,
        bias: bool = False,
        residual: bool = False,
        sigma_min: float = 3e-4,
        sigma_max: float = 3e-2,
        project_prob: float = 0.5,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = KernelDenoiser(channels=channels, bias=bias, residual=residual)

    def corrupt(self, kernels: Tensor, sigma: Tensor, generator: torch.Generator | None = None):
        """``(input, target, level)``: the noisy kernel, the clean one and the noise level of the input.

        A projected input ``clip(k + σn)/s`` (``s`` its sum) comes with target ``k/s`` and level
        ``σ/s``, so the task stays "remove noise of this level" at the input's own scale; the
        overall scale is immaterial since the M-step renormalises the output.
        """
        noise = torch.randn(kernels.shape, generator=generator, device=kernels.device, dtype=kernels.dtype)
        noisy = kernels + sigma.view(-1, 1, 1, 1) * noise
        project = torch.rand(kernels.shape[0], 1, 1, 1, generator=generator, device=kernels.device) < self.hparams.project_prob
        clipped = noisy.clamp_min(0)
        scale = torch.where(project, clipped.sum(dim=(-2, -1), keepdim=True).clamp_min(1e-12), torch.ones_like(sigma).view(-1, 1, 1, 1))
        noisy = torch.where(project, clipped, noisy) / scale
        return noisy, kernels / scale, sigma / scale.view(-1)

    def _log_uniform(self, u: Tensor) -> Tensor:
        lo, hi = math.log(self.hparams.sigma_min), math.log(self.hparams.sigma_max)
        return torch.exp(lo + (hi - lo) * u)

    def training_step(self, kernels: Tensor, batch_idx: int) -> Tensor:
        kernels = random_dihedral(kernels)
        sigma = self._log_uniform(torch.rand(kernels.shape[0], device=kernels.device))
        noisy, target, level = self.corrupt(kernels, sigma)
        loss = (((self.net(noisy, level) - target) / level.view(-1, 1, 1, 1)) ** 2).mean()
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, kernels: Tensor, batch_idx: int) -> None:
        g = torch.Generator(device=kernels.device).manual_seed(batch_idx)
        n = kernels.shape[0]
        sigma = self._log_uniform((torch.arange(n, device=kernels.device) + 0.5) / n)
        noisy, target, level = self.corrupt(kernels, sigma, generator=g)
        pred = self.net(noisy, level)
        self.log("val/kernel_mse", ((normalize_kernel(pred) - kernels) ** 2).mean(), prog_bar=True)
        self.log("val/loss", (((pred - target) / level.view(-1, 1, 1, 1)) ** 2).mean())

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        steps = self.trainer.estimated_stepping_batches
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(steps)), eta_min=self.hparams.lr * 0.05)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def export_state_dict(self) -> dict[str, Tensor]:
        """Weights for :func:`fdem.nets.load_kernel_denoiser`."""
        from fdem.nets.kernel_denoiser import denoiser_state_for_export

        return denoiser_state_for_export(self.net)
