"""How natural a restored image looks to the prior: the score network's denoising loss on it.

Every chain of a blind run explains ``y`` with its own kernel (the misfit cannot rank them, docs/design.md
§10); what tells a right (image, kernel) pair from a wrong one is how natural the image is. The prior's
denoising loss ``mean ‖ε_θ(√ᾱ_t x + √(1−ᾱ_t) ε, t) − ε‖²`` over a few small noise levels is a cheap
stand-in for its negative log-likelihood (the terms of the ELBO at those levels): ringing and invented
edges raise it. The noise ``ε`` is drawn once from a fixed seed and shared by every chain, so chains of
one image are compared on the same draws (``combine = natural``, :func:`fdem.sampling.restarts.keep_best`).
Chosen on BSDS500 val (docs/results.md, "The blind penalty on photographs").
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.diffusion import Schedule

NATURAL_LEVELS = (0.02, 0.05, 0.1, 0.2)  # the noise levels, as fractions of the prior's T
NATURAL_SEED = 0  # the shared noise's seed


@torch.no_grad()
def denoising_loss(net, schedule: Schedule, image: Tensor) -> Tensor:
    """``(B,)``: the mean over :data:`NATURAL_LEVELS` of the network's ε-prediction error on ``image (B, C, H, W)``
    in ``[0, 1]`` noised to each level (``schedule``: the prior's, unrespaced, T steps)."""
    x0 = image * 2 - 1
    generator = torch.Generator().manual_seed(NATURAL_SEED)
    noise = torch.randn((1,) + tuple(x0.shape[1:]), generator=generator).to(x0)  # one draw, before any step
    loss = torch.zeros(x0.shape[0], dtype=x0.dtype, device=x0.device)
    for level in NATURAL_LEVELS:
        t = min(int(round(level * schedule.num_steps)), schedule.num_steps - 1)
        abar = schedule.alphas_cumprod[t]
        noisy = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
        predicted = net(noisy, schedule.timesteps[t].expand(x0.shape[0]))[:, : x0.shape[1]]
        loss += (predicted - noise).pow(2).mean(dim=(1, 2, 3))
    return loss / len(NATURAL_LEVELS)
