"""Guidance rules: how the observation ``y = k ⊛ x + σn`` steers each DDPM step (docs/design.md §4).

A rule gives, per respaced step ``i``, a host-side weight ``w_i`` and a direction ``d`` in the
``[0, 1]`` image space of ``u = clamp((x̂0 + 1)/2, 0, 1)``; the loop adds ``w_i · (∂u/∂x_i)ᵀ d``
(one vector–Jacobian product through the network) to the unguided step. Directions are computed
in Fourier for all particles at once from the run's :class:`~fdem.problem.BlurProblem` (``y``'s
spectrum, the kernel's cached OTF): ``u (B, n, C, H, W)``, one kernel per image ``(B, 1, k, k)``
shared by its particles.

With ``step_rule="ddim"`` ΠGDM's weight is the DDIM step's coefficient of the guided score, damped
by ``√ᾱ_i`` as the authors' ancestral weight is (:func:`pigdm_weights`, docs/design.md §8); DPS
keeps its step under both rules.

* ΠGDM (the paper's Eq. 11): ``d = F⁻¹[conj(K)(Y − K·U) / (r²|K|² + σ²)] = Hᵀ(r²HHᵀ + σ²I)⁻¹(y − Hu)``
  and ``w_i = √ᾱ_i · r_i² · √(1/(1 + v_i))`` with ``v_i = β̃_i``. The r² rule (:func:`r2_schedule`)
  sets ``r_i²``: ``"official"`` (the authors' code) ``v/(1 + v)``, ``"paper"`` (ΠGDM) ``1 − ᾱ_i``;
  it replaces ``r²`` everywhere it appears, so both rules share the official step form. (With the
  paper rule the step no longer shrinks with the step size: fine at ΠGDM's 100 steps, it overshoots
  at 1000.)
* ΠGDM with the kernel's uncertainty (``kernel_uncertainty`` κ > 0, blind runs): ``σ²`` becomes
  ``σ² + κ·V(ω)|U(ω)|²/N`` per frequency, the variance of ``Δk ⊛ u`` for the kernel spectrum's
  variance ``V``: the M-step's posterior spread, or the spread of several chains' kernels
  (:mod:`fdem.sampling.kernel_uncertainty`, docs/design.md §14).
* DPS (the paper's Eq. 9): ``ρ = ‖y − k ⊛ u‖₂`` (not squared) per particle,
  ``d = −∇_u ρ = Hᵀ(y − Hu)/ρ`` and ``w_i = √ᾱ_i·T/S`` (:func:`dps_weights`: the authors' ``√ᾱ_i``
  at their S = T steps), i.e. ``x_{i−1} = x'_{i−1} − w_i ∇_{x_i} ρ``.
  The authors compare ``x̂0`` in ``[−1, 1]`` with ``y`` in ``[0, 1]`` and take one norm over the
  whole batch; here ``x̂0`` is mapped to ``[0, 1]`` first and each particle has its own norm (so
  particles and images do not interact).
"""

from __future__ import annotations

import torch
from torch import Tensor

from fdem.diffusion import Schedule
from fdem.errors import InputError
from fdem.problem import BlurProblem
from fdem.sampling.kernel_uncertainty import kernel_error_variance

SIGMA_FLOOR = 1e-8  # the authors' guard for σ = 0


def r2_schedule(schedule: Schedule, rule: str) -> list[float]:
    """ΠGDM's variance ``r_i²`` of ``x0 | x_i`` for every respaced step (host floats):
    ``"official"`` ``v_i/(1 + v_i)`` with ``v_i = β̃_i``, ``"paper"`` ``1 − ᾱ_i`` (:data:`fdem.presets.R2_RULES`)."""
    if rule == "official":
        v = schedule.posterior_variance.double()
        return (v / (1 + v)).tolist()
    return (1 - schedule.alphas_cumprod.double()).tolist()


def pigdm_weights(schedule: Schedule, r2: list[float], step_rule: str = "ddpm", eta: float = 1.0) -> list[float]:
    """ΠGDM's step weights on ``g = (∂u/∂x_i)ᵀd`` (docs/design.md §8), host floats:

    ancestral (the authors' code, unchanged) ``w_i = √ᾱ_i · r_i² / √(1 + β̃_i)``; DDIM with η
    ``w_i = √ᾱ_i · f_i`` with ``f_i = √ᾱ_{i−1}(1−ᾱ_i)/√ᾱ_i − c_i·√(1−ᾱ_i)`` the step's coefficient of
    the guided score (:meth:`~fdem.diffusion.Schedule.ddim_score_factor`) and ``√ᾱ_i`` the authors'
    damping; at η = 1, ``w_i = √ᾱ_{i−1}·β_i``. ``r_i²`` enters the DDIM rule only through ``d``.
    """
    if step_rule == "mean":  # the posterior mean replaces x̂0: no VJP (:meth:`PiGDM.posterior_mean`)
        return [0.0] * schedule.num_steps
    if step_rule == "ddim":
        return (schedule.ddim_score_factor(eta) * schedule.alphas_cumprod.double().cpu().sqrt()).tolist()
    r2 = torch.tensor(r2, dtype=torch.float64)
    abar, v = schedule.alphas_cumprod.double(), schedule.posterior_variance.double()
    return (abar.sqrt() * r2 / (1 + v).sqrt()).tolist()


# The "mean" step rule's variance of u | x_i (u in [0, 1]): r̃_i² = MEAN_R2_SCALE · (1 − ᾱ_i), ΠGDM's
# 1 − ᾱ_i for data of per-pixel variance MEAN_R2_SCALE. Chosen on BSDS500 val crops, non-blind ΠGDM
# at 25 steps (studies/fastem/NOTES.md): 0.25 (the variance of uniform [0, 1] pixels) 25.50 dB, 0.02 26.48.
MEAN_R2_SCALE = 0.02


def mean_r2(schedule: Schedule) -> list[float]:
    """The "mean" step rule's ``r̃_i² = MEAN_R2_SCALE·(1 − ᾱ_i)`` for every respaced step (host floats)."""
    return (MEAN_R2_SCALE * (1 - schedule.alphas_cumprod.double())).tolist()


class PiGDM:
    """ΠGDM guidance (pseudo-inverse guided diffusion) with the official or the paper r² rule;
    weights of the step rule (:func:`pigdm_weights`). Under the ``"mean"`` step rule it gives the
    posterior mean of x0 instead (:meth:`posterior_mean`), with its own r̃² (:func:`mean_r2`).
    ``kernel_uncertainty`` κ > 0 adds the kernel's error to the noise (a blind run's estimated kernel,
    :mod:`fdem.sampling.kernel_uncertainty`; with ``chains`` > 1 restarts per image, chain-major, measured
    as the spread of their kernels); 0 takes the kernel as exact (the paper's Eq. 11)."""

    def __init__(self, schedule: Schedule, rule: str = "official", step_rule: str = "ddpm", eta: float = 1.0,
                 kernel_uncertainty: float = 0.0, chains: int = 1):
        self.r2 = mean_r2(schedule) if step_rule == "mean" else r2_schedule(schedule, rule)
        self.weights = pigdm_weights(schedule, self.r2, step_rule, eta)
        self.kernel_uncertainty, self.chains = kernel_uncertainty, chains

    def posterior_mean(self, u: Tensor, problem: BlurProblem, kernel: Tensor, i: int) -> Tensor:
        """E[x0 | x_i, y] under ΠGDM's Gaussian ``x0 | x_i ~ N(u, r̃_i² I)``:
        ``u + r̃_i² Hᵀ(r̃_i² HHᵀ + σ²I)⁻¹(y − Hu)`` = ``u + r̃_i²·d`` (docs/design.md §8), clamped to [0, 1]."""
        return (u + self.r2[i] * self.direction(u, problem, kernel, i)).clamp(0, 1)

    def direction(self, u: Tensor, problem: BlurProblem, kernel: Tensor, i: int) -> Tensor:
        u_hat = torch.fft.rfft2(u)
        residual = problem.residual_spectrum(u, kernel, u_hat)
        noise = problem.sigma.clamp_min(SIGMA_FLOOR).square().reshape(-1, 1, 1, 1, 1)
        if self.kernel_uncertainty > 0:
            noise = noise + self.kernel_uncertainty * kernel_error_variance(u, u_hat, problem, kernel, self.chains)
        return problem.pseudo_inverse(residual, kernel, self.r2[i], noise)


def dps_weights(schedule: Schedule) -> list[float]:
    """DPS's gradient step sizes ``√ᾱ_i · T/S`` (host floats): the authors' ``√ᾱ_i`` at their
    ``S = T`` steps, and at fewer steps the same guidance per unit of diffusion time, as ΠGDM's
    weights grow with the respaced β_i (docs/design.md §8). On 4 BSDS500-val crops (128², 33²
    kernels, σ = 5/255, shipped prior, 100 steps) non-blind DPS gives 15.8 dB with ×1, 20.3 with ×3
    and 23.9 with ×T/S = ×10 (blurry input 21.8)."""
    return (schedule.sqrt_alphas_cumprod.double() * dps_stride(schedule)).tolist()


def dps_stride(schedule: Schedule) -> float:
    """T/S, the factor of DPS's step at S respaced steps of a T-step prior (:func:`dps_weights`)."""
    return schedule.T / schedule.num_steps


class DPS:
    """Diffusion posterior sampling guidance: the gradient of the un-squared residual norm; the
    step ``√ᾱ_i`` is a gradient step size, the same for the ddpm and ddim rules (docs/design.md §8;
    :class:`~fdem.presets.RunSpec` refuses the "mean" rule for it)."""

    def __init__(self, schedule: Schedule):
        self.weights = dps_weights(schedule)

    def direction(self, u: Tensor, problem: BlurProblem, kernel: Tensor, i: int) -> Tensor:
        residual = problem.residual_spectrum(u, kernel)
        norm = problem.image(residual).flatten(2).norm(dim=-1)  # ρ = ‖y − H u‖₂ per particle
        return problem.adjoint(residual, kernel) / norm.clamp_min(1e-12)[..., None, None, None]


GUIDANCES = ("dps", "pigdm")


def make_guidance(name: str, schedule: Schedule, sampler, kernel_uncertainty: float = 0.0, chains: int = 1) -> PiGDM | DPS:
    """The guidance rule ``name`` ("dps" or "pigdm") for a :class:`~fdem.presets.SamplerSpec`'s step
    rule, η and r² rule; ΠGDM with the kernel's uncertainty κ over ``chains`` restarts per image
    (:attr:`~fdem.presets.RunSpec.kernel_uncertainty` is κ only for blind ΠGDM methods)."""
    if name == "pigdm":
        return PiGDM(schedule, sampler.r2_rule, sampler.step_rule, sampler.eta, kernel_uncertainty, chains)
    if name == "dps":
        return DPS(schedule)
    raise InputError(f"unknown guidance {name!r}: choose one of {', '.join(GUIDANCES)}")
