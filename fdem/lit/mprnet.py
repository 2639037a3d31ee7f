"""Supervised training of MPRNet (Zamir et al., CVPR 2021) on (blurry, sharp) pairs.

Loss, as in the paper, summed over the three stage outputs ``S``:
``Σ_S L_char(S, X) + λ · L_edge(S, X)`` with the Charbonnier loss ``mean √((S − X)² + ε²)``
(ε = 1e-3), ``L_edge = L_char(Δ(S), Δ(X))`` on the Laplacian (band-pass) level of a Gaussian
pyramid and λ = 0.05. Adam at 2e-4 with cosine decay to ``lr_min`` over the run's steps.
"""

from __future__ import annotations

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor

from fdem.nets.mprnet import MPRNet

BINOMIAL = (1.0, 4.0, 6.0, 4.0, 1.0)  # 5-tap binomial approximation of a Gaussian (Burt & Adelson)


def charbonnier(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """Mean ``√((x − y)² + ε²)``: a smooth ℓ1."""
    return torch.sqrt((x - y).square() + eps * eps).mean()


def _blur_valid(x: Tensor) -> Tensor:
    """Separable 5×5 binomial blur per channel, 'valid' part only (2 pixels lost on each side)."""
    taps = torch.tensor(BINOMIAL, dtype=x.dtype, device=x.device)
    taps = taps / taps.sum()
    channels = x.shape[1]
    x = F.conv2d(x, taps.view(1, 1, 1, 5).expand(channels, 1, 1, 5), groups=channels)
    return F.conv2d(x, taps.view(1, 1, 5, 1).expand(channels, 1, 5, 1), groups=channels)


def laplacian(x: Tensor) -> Tensor:
    """Finest Laplacian-pyramid level: ``x`` minus its blurred, decimated and re-expanded self.

    Borders are replicated; expansion puts the decimated samples (with a replicated one-sample
    margin) back on the even grid, zeros elsewhere, ×4 to keep the mean, and blurs again, so a
    constant image has a zero Laplacian everywhere. H and W must be even.
    """
    coarse = _blur_valid(F.pad(x, (2, 2, 2, 2), mode="replicate"))[..., ::2, ::2]
    coarse = F.pad(coarse, (1, 1, 1, 1), mode="replicate")
    expanded = x.new_zeros(x.shape[:-2] + (x.shape[-2] + 4, x.shape[-1] + 4))
    expanded[..., ::2, ::2] = 4 * coarse
    return x - _blur_valid(expanded)


def edge_loss(x: Tensor, y: Tensor, eps: float = 1e-3) -> Tensor:
    """Charbonnier distance between the Laplacian levels of ``x`` and ``y``."""
    return charbonnier(laplacian(x), laplacian(y), eps)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Mean over the batch of the per-image PSNR (dB) of images in ``[0, 1]``."""
    mse = (x - y).square().flatten(1).mean(dim=1).clamp_min(1e-12)
    return (-10 * torch.log10(mse)).mean()


class MPRNetModule(L.LightningModule):
    """Trains an :class:`~fdem.nets.mprnet.MPRNet` of the given widths (defaults: the released
    deblurring model) on batches ``(blurry, sharp)`` in ``[0, 1]``.

    Validation logs the loss and the PSNR of the last stage (clamped to ``[0, 1]``) against the
    sharp image and of the blurry input, so the gain is visible in the logs.
    """

    def __init__(
        self,
        n_feat: int = 96,
        scale_unetfeats: int = 48,
        scale_orsnetfeats: int = 32,
        num_cab: int = 8,
        lr: float = 2e-4,
        lr_min: float = 1e-6,
        eps: float = 1e-3,
        edge_weight: float = 0.05,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = MPRNet(n_feat=n_feat, scale_unetfeats=scale_unetfeats, scale_orsnetfeats=scale_orsnetfeats, num_cab=num_cab)

    def widths(self) -> dict[str, int]:
        """The constructor arguments of the network (what a loader needs besides the weights)."""
        h = self.hparams
        return dict(n_feat=h.n_feat, scale_unetfeats=h.scale_unetfeats, scale_orsnetfeats=h.scale_orsnetfeats, num_cab=h.num_cab)

    def loss(self, stages: list[Tensor], sharp: Tensor) -> Tensor:
        h = self.hparams
        return sum(charbonnier(s, sharp, h.eps) + h.edge_weight * edge_loss(s, sharp, h.eps) for s in stages)

    def training_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> Tensor:
        blurry, sharp = batch
        loss = self.loss(self.net(blurry), sharp)
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch: tuple[Tensor, Tensor], batch_idx: int) -> None:
        blurry, sharp = batch
        stages = self.net(blurry)
        n = blurry.shape[0]
        self.log("val/loss", self.loss(stages, sharp), prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/psnr", psnr(stages[0].clamp(0, 1), sharp), prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/psnr_input", psnr(blurry.clamp(0, 1), sharp), sync_dist=True, batch_size=n)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.Adam(self.net.parameters(), lr=h.lr, betas=(0.9, 0.999), eps=1e-8)
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps, eta_min=h.lr_min)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def export_state_dict(self) -> dict[str, Tensor]:
        """The network's plain state_dict (load it with ``load_mprnet(path, widths=...)``)."""
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}
