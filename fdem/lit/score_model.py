"""DDPM training of the ADM score UNet (improved DDPM's hybrid objective, EMA weights)."""

from __future__ import annotations

import copy

import lightning as L
import torch
from torch import Tensor

from fdem.diffusion import Schedule
from fdem.diffusion_losses import hybrid_loss
from fdem.nets.unet import build_unet


def random_hflip(x: Tensor) -> Tensor:
    """Mirror each image left-right with probability 1/2."""
    flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
    return torch.where(flip, x.flip(-1), x)


class ScoreModel(L.LightningModule):
    """Trains ``unet`` (a named ADM config or a dict of ADMConfig fields) on images in [−1, 1].

    Uniform timesteps over a ``T``-step ``schedule``; loss = ε-MSE + ``hybrid_lambda``·L_vlb, the
    bound term training only the learned-range variance (:func:`fdem.diffusion_losses.hybrid_loss`;
    pure ε-MSE when the UNet has no learned σ). ``self.ema`` is an exponential moving average of
    the weights (decay ``ema_decay``; a plain copy for the first ``ema_start`` steps), updated after
    every optimizer step and used for validation and export. ``init_from`` (a prior file or a shipped
    prior's name) starts both from trained weights of the same architecture. Gradient clipping and mixed precision
    are the Trainer's ``gradient_clip_val`` and ``precision``.
    """

    def __init__(
        self,
        unet: str | dict = "small64",
        T: int = 1000,
        schedule: str = "linear",
        lr: float = 1e-4,
        weight_decay: float = 0.0,
        ema_decay: float = 0.9999,
        ema_start: int = 0,
        hybrid_lambda: float = 0.001,
        hflip: bool = True,
        val_noise_seed: int = 0,
        init_from: str | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = build_unet(unet)
        if init_from is not None:  # warm start (fine-tuning): the weights of a prior of the same architecture
            from fdem.priors import load_prior

            self.net.load_state_dict(load_prior(init_from, unet).net.state_dict())
        self.ema = copy.deepcopy(self.net).requires_grad_(False)
        self.schedule = Schedule.make(T, kind=schedule)

    def losses(self, net: torch.nn.Module, x0: Tensor, i: Tensor, noise: Tensor) -> dict[str, Tensor]:
        """Batch-mean hybrid losses of ``net`` on x0 at respaced steps ``i`` with the given noise."""
        x_t = self.schedule.q_sample(x0, i, noise)
        out = net(x_t, self.schedule.timesteps[i]).float()
        terms = hybrid_loss(self.schedule, out, x0, x_t, i, noise, self.hparams.hybrid_lambda)
        return {name: value.mean() for name, value in terms.items()}

    def training_step(self, x0: Tensor, batch_idx: int) -> Tensor:
        x0 = random_hflip(x0) if self.hparams.hflip else x0
        i = torch.randint(0, self.schedule.num_steps, (x0.shape[0],), device=x0.device)
        terms = self.losses(self.net, x0, i, torch.randn_like(x0))
        self.log("train/loss", terms["loss"], prog_bar=True)
        self.log_dict({"train/mse": terms["mse"], "train/vb": terms["vb"]})
        return terms["loss"]

    def validation_step(self, x0: Tensor, batch_idx: int) -> None:
        """EMA weights, stratified timesteps and noise seeded by the batch index (repeatable)."""
        g = torch.Generator(device=x0.device).manual_seed(self.hparams.val_noise_seed + batch_idx)
        n, steps = x0.shape[0], self.schedule.num_steps
        i = ((torch.arange(n, device=x0.device) + 0.5) * steps / n).long()
        noise = torch.randn(x0.shape, generator=g, device=x0.device, dtype=x0.dtype)
        terms = self.losses(self.ema, x0, i, noise)
        self.log("val/loss", terms["loss"], prog_bar=True, sync_dist=True, batch_size=n)
        self.log("val/mse", terms["mse"], sync_dist=True, batch_size=n)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.net.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)

    def optimizer_step(self, *args, **kwargs) -> None:
        super().optimizer_step(*args, **kwargs)
        self.update_ema()

    @torch.no_grad()
    def update_ema(self) -> None:
        """ema ← decay·ema + (1 − decay)·net (decay 0 before ``ema_start`` steps)."""
        decay = self.hparams.ema_decay if self.global_step > self.hparams.ema_start else 0.0
        for avg, param in zip(self.ema.parameters(), self.net.parameters()):
            avg.lerp_(param.detach(), 1.0 - decay)
        for avg, buf in zip(self.ema.buffers(), self.net.buffers()):
            avg.copy_(buf)

    def export_state_dict(self) -> dict[str, Tensor]:
        """The EMA UNet's weights with ADMUNet's own keys (the guided-diffusion layout)."""
        return {k: v.detach().clone() for k, v in self.ema.state_dict().items()}

    def export_hyper_parameters(self) -> dict:
        """What a prior file records beside the weights: the architecture and the schedule trained with."""
        return {"unet": self.hparams.unet, "T": self.hparams.T, "schedule": self.hparams.schedule}
