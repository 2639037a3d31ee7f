"""Fast Diffusion EM: the paper's Algorithm 2 — on one page (:func:`fast_em_paper`) and as the M-step
hook of the general loop (:func:`fast_em_hook`, docs/design.md §4).

Algorithm 2 keeps ``n`` particles per image and one kernel estimate ``k`` (a Dirac at the start)
and, for i = S−1 … 0 (respaced steps; the network sees the original timestep τ_i), does

1. **E-step** — one DDPM step of the ``n`` particles: the network gives ``x̂0`` and the unguided
   ancestral step ``x'_{i−1}`` is drawn (no noise at ``i = 0``);
2. **M-step** — HQS on the current ``x̂0`` (``u`` in ``[0, 1]``), warm-started from the previous
   kernel (:meth:`fdem.mstep.MStepConfig.update`); its data weight is ``α = σ²β`` (the authors'
   code, ``weighting="official"``) or Eq. 24's ``α = nβσ²`` with Eq. 33's ``n·N·r_i²`` term
   (``"paper"``, :func:`fdem.mstep.data_term`);
3. **re-centring** — the kernel's centre of mass is moved to the window's centre (the M-step's
   ``recenter`` rule);
4. **guidance** with that new kernel — DPS (Eq. 9) or ΠGDM (Eq. 11), added to ``x'_{i−1}`` by one
   VJP through the network.

The general loop (:func:`fdem.sampling.loop.guided_step`) runs 1, 2+3 (the hook) and 4 in this order
for every preset; :func:`fast_em_paper` writes the ``paper`` preset out line by line, and a test
checks that both give the same particles and kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fdem.diffusion import Schedule
from fdem.field_problem import FieldProblem
from fdem.kernel_ops import dirac
from fdem.mstep import MStepConfig
from fdem.problem import BlurProblem
from fdem.sampling.field_em import field_em_hook
from fdem.sampling.guidance import PiGDM, r2_schedule
from fdem.sampling.loop import MStepHook, NoiseSource, predict_x0


# Fast EM's default λ is a multiple of the Figure-4 λ of the kernel denoiser
# (:func:`fdem.mstep.default_lambda`, tuned with the *sharp* image known). Inside the sampler the
# M-step sees x̂0, a blurrier and partly wrong image, and with the Figure-4 λ the kernel follows its
# errors; the stronger prior keeps it on clean strokes. The multiple falls with the noise: the data
# term weighs 1/σ², so at high σ the same λ is a relatively stronger prior and over-smooths the
# kernel. (σ·255, multiple) pairs chosen on BSDS500 val crops (studies/fastem/NOTES.md: λ ∈ {0.1, 0.2,
# 0.3, 0.5, 1} at σ = 5, {0.2, 0.3} at σ = 10, {0.1, 0.15, 0.2, 0.3, 0.6} at σ = 20 for the 33×33
# denoiser); linear in log σ between them, constant outside.
FAST_EM_LAMBDA_SCALES = ((5.0, 3.0), (10.0, 3.0), (20.0, 2.0))


def fast_em_lambda_scale(sigma: Tensor) -> Tensor:
    """The per-image multiple of the Figure-4 λ for noise levels ``sigma (B,)`` ([0, 1] units), from
    :data:`FAST_EM_LAMBDA_SCALES` (on ``sigma``'s device, no host synchronisation)."""
    levels = torch.tensor([math.log(s / 255) for s, _ in FAST_EM_LAMBDA_SCALES], dtype=sigma.dtype, device=sigma.device)
    scales = torch.tensor([m for _, m in FAST_EM_LAMBDA_SCALES], dtype=sigma.dtype, device=sigma.device)
    t = sigma.clamp(FAST_EM_LAMBDA_SCALES[0][0] / 255, FAST_EM_LAMBDA_SCALES[-1][0] / 255).log()
    upper = torch.searchsorted(levels, t).clamp(1, len(levels) - 1)
    weight = (t - levels[upper - 1]) / (levels[upper] - levels[upper - 1])
    return scales[upper - 1] + weight * (scales[upper] - scales[upper - 1])


def fast_em_hook(problem: BlurProblem, schedule: Schedule, spec) -> MStepHook:
    """Steps 2 and 3 of Algorithm 2 for a :class:`~fdem.presets.RunSpec`: the warm-started M-step on the
    particles at step ``i``, re-centred (on a :class:`~fdem.field_problem.FieldProblem`, cell by cell,
    :func:`~fdem.sampling.field_em.field_em_hook`). Under the ``noise`` λ rule the denoiser's own λ is multiplied by
    :func:`fast_em_lambda_scale`, per image (a ``lam`` given explicitly is used as it is). An over-relaxed M-step (``kernel_relax`` ≠ 1, docs/design.md) is
    plain at the last step, ``i = 0``: the last kernel fits the last image, no extrapolation past it."""
    em = spec.em
    r2 = r2_schedule(schedule, spec.sampler.r2_rule)
    scale = fast_em_lambda_scale(problem.sigma) if em.lam_rule == "noise" and em.mstep.lam is None else None
    if isinstance(problem, FieldProblem):  # a kernel per cell (docs/design.md §19)
        return field_em_hook(problem, schedule, spec, scale)

    def hook(u: Tensor, kernel: Tensor, i: int) -> Tensor:
        return em.mstep.update(problem, u, init=kernel, weighting=em.weighting, r2=r2[i], recenter=True,
                               lam_scale=scale, relax=em.kernel_relax if i > 0 else 1.0)

    return hook


@torch.no_grad()
def fast_em_paper(net, schedule: Schedule, problem: BlurProblem, mstep: MStepConfig,
                  noise: NoiseSource) -> tuple[Tensor, Tensor]:
    """Algorithm 2 as the ``paper`` preset runs it (n = 1, ΠGDM, official r² and α, Dirac start),
    written out step by step: returns ``(x0 (B, 1, C, H, W) in [0, 1], kernel (B, 1, k, k))``.
    The comments are the paper's pseudo-code; the general loop gives the same (tests/test_algorithm2.py)."""
    y, batch = problem.y, problem.y.shape[0]
    guidance = PiGDM(schedule, "official")
    x = noise((1,) + tuple(y.shape[1:]), y)  # x_T ~ N(0, I)
    k = dirac(batch, mstep.kernel_size, y.device, y.dtype)  # k ← δ
    for i in reversed(range(schedule.num_steps)):  # for t = T … 1
        weight = guidance.weights[i]
        with torch.enable_grad():
            x_in = x.detach().requires_grad_(weight != 0.0)
            x0, _ = predict_x0(net, schedule, x_in, i)  # x̂0 = (x_t − √(1−ᾱ_t) ε_θ(x_t, t)) / √ᾱ_t
            u = ((x0 + 1) / 2).clamp(0, 1)
        z = noise((1,) + tuple(y.shape[1:]), y) if i > 0 else None  # z ~ N(0, I)
        x_prev = schedule.ddpm_step(x, x0.detach(), i, z)  # x'_{t−1} = μ̃_t(x_t, x̂0) + σ_t z
        particles = u.detach().unflatten(0, (batch, 1))
        # k ← HQS(y, x̂0, k): 10 iterations from the last kernel, then k ← shift(k, centre − CoM(k))
        k = mstep.update(problem, particles, init=k, weighting="official", r2=0.0, recenter=True)
        if weight != 0.0:  # x_{t−1} = x'_{t−1} + √ᾱ_t r_t² / √(1 + v_t) · (∂x̂0/∂x_t)ᵀ Hᵀ(r_t² HHᵀ + σ²I)⁻¹(y − H x̂0)
            direction = guidance.direction(particles, problem, k, i).flatten(0, 1)
            (vjp,) = torch.autograd.grad(u, x_in, direction)
            x_prev = x_prev + weight * vjp
        x = x_prev
    return ((x + 1) / 2).clamp(0, 1).unflatten(0, (batch, 1)), k
