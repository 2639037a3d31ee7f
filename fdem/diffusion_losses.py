"""Training losses of an ADM score network: ε-MSE and improved DDPM's variational-bound term.

The "hybrid" objective (Nichol & Dhariwal 2021) is L_simple + λ·L_vlb. L_vlb = Σ_t L_t is estimated
with one uniformly drawn step per sample, S·L_t (S steps), and its gradient reaches only the
variance channels: the mean comes from a detached ε. With λ = 0.001 and S = 1000 this is
guided-diffusion's "rescaled MSE" loss, mse + L_t. Bound terms are in bits per dimension.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fdem.diffusion import Schedule

__all__ = ["discretized_gaussian_log_likelihood", "hybrid_loss", "normal_kl", "vlb_term"]

BIN_WIDTH = 2 / 255  # 8-bit data mapped to [-1, 1]
EDGE = 0.999  # |x| above this is an edge bin, open towards ±∞
TINY = 1e-12


def normal_kl(mean1: Tensor, logvar1: Tensor, mean2: Tensor, logvar2: Tensor) -> Tensor:
    """KL(N(mean1, e^logvar1) ‖ N(mean2, e^logvar2)) elementwise, in nats."""
    return 0.5 * (logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2) - 1)


def discretized_gaussian_log_likelihood(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """log of the N(mean, e^{2·log_scale}) mass of x's 8-bit bin (x in [-1, 1]), elementwise.

    The bins are BIN_WIDTH wide around each level; the first and last extend to −∞ and +∞, so the
    256 masses sum to one (the decoder p(x0 | x1) of DDPM).
    """
    inv_std = torch.exp(-log_scale)
    upper = inv_std * (x - mean + BIN_WIDTH / 2)
    lower = inv_std * (x - mean - BIN_WIDTH / 2)
    log_below_upper = torch.special.log_ndtr(upper)
    log_above_lower = torch.special.log_ndtr(-lower)
    log_mass = (torch.special.ndtr(upper) - torch.special.ndtr(lower)).clamp_min(TINY).log()
    return torch.where(x < -EDGE, log_below_upper, torch.where(x > EDGE, log_above_lower, log_mass))


def vlb_term(schedule: Schedule, x0: Tensor, x_t: Tensor, i: Tensor, eps: Tensor, var_values: Tensor) -> Tensor:
    """Per-sample L_i in bits/dim for the model p(x_{i−1} | x_i) given by (eps, var_values).

    i > 0: KL(q(x_{i−1} | x_i, x0) ‖ p(x_{i−1} | x_i)); i = 0: −log p(x0 | x_1), the discretised
    Gaussian decoder. The model mean is the posterior mean at x̂0(ε) (not clipped); its variance is
    improved DDPM's learned range.
    """
    true_mean, _, true_logvar = schedule.posterior_mean_var(x0, x_t, i)
    model_mean, _, _ = schedule.posterior_mean_var(schedule.eps_to_x0(x_t, eps, i), x_t, i)
    model_logvar = schedule.model_log_variance(var_values, i, "learned_range")
    kl = normal_kl(true_mean, true_logvar, model_mean, model_logvar)
    nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * model_logvar)
    per_dim = torch.where((i == 0).view(-1, 1, 1, 1), nll, kl)
    return per_dim.flatten(1).mean(1) / math.log(2)


def hybrid_loss(
    schedule: Schedule, out: Tensor, x0: Tensor, x_t: Tensor, i: Tensor, noise: Tensor, hybrid_lambda: float
) -> dict[str, Tensor]:
    """Per-sample losses {"loss", "mse", "vb"} of the network output ``out`` at (x_t, i).

    ``out`` holds ε (as many channels as x0), then the variance values when the network learns σ.
    Without them the loss is exactly the ε-MSE and "vb" is zero.
    """
    c = x0.shape[1]
    eps = out[:, :c]
    mse = ((eps - noise) ** 2).flatten(1).mean(1)
    if out.shape[1] == c:
        return {"loss": mse, "mse": mse, "vb": torch.zeros_like(mse)}
    vb = vlb_term(schedule, x0, x_t, i, eps.detach(), out[:, c:])
    return {"loss": mse + hybrid_lambda * schedule.num_steps * vb, "mse": mse, "vb": vb}
