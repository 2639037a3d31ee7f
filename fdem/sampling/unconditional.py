"""Unconditional DDPM sampling from a score prior (to look at what a trained prior has learned)."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from tqdm.auto import tqdm

from fdem.diffusion import ScheduleSpec, variance_kind
from fdem.nets.unet import ADMUNet


@torch.no_grad()
def sample_unconditional(
    net: ADMUNet,
    n: int,
    steps: int = 100,
    schedule: ScheduleSpec | None = None,
    seed: int = 0,
    progress: bool = True,
) -> Tensor:
    """``n`` samples (n, C, H, W) in [−1, 1] by ancestral DDPM over ``steps`` respaced steps of the
    prior's ``schedule`` (None: :meth:`ScheduleSpec.assumed_for` the network, T = 1000 linear).

    The variance is the network's learned range when the prior predicts σ, else β̃ (fixed_small,
    :func:`~fdem.diffusion.variance_kind`); x̂0 is clamped to [−1, 1] at every step. Runs on the
    network's device.
    """
    cfg = net.cfg
    spec = ScheduleSpec.assumed_for(net) if schedule is None else schedule
    device = next(net.parameters()).device
    sched = spec.build(steps, device)
    var_kind = variance_kind(spec, use_learned=True)
    g = torch.Generator(device=device).manual_seed(seed)
    c, size = cfg.prediction_channels, cfg.image_size
    x = torch.randn((n, cfg.in_channels, size, size), generator=g, device=device)
    for i in tqdm(range(sched.num_steps - 1, -1, -1), desc="sampling", disable=not progress):
        out = net(x, sched.timesteps[i].expand(n)).float()
        x0 = sched.eps_to_x0(x, out[:, :c], i, clip=True)
        noise = torch.randn(x.shape, generator=g, device=device) if i > 0 else None
        x = sched.ddpm_step(x, x0, i, noise, var_kind, out[:, c:] if var_kind == "learned_range" else None)
    return x.clamp(-1, 1)


def sample_grid(samples: Tensor, padding: int = 2) -> Tensor:
    """A (3, H', W') grid in [0, 1] of samples in [−1, 1], ⌈√n⌉ per row.

    1-channel samples (kernels) are shown gray, each scaled to its own maximum.
    """
    from torchvision.utils import make_grid

    images = ((samples.float() + 1) / 2).clamp(0, 1).cpu()
    if images.shape[1] == 1:
        images = images / images.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
    return make_grid(images, nrow=math.ceil(math.sqrt(images.shape[0])), padding=padding)
