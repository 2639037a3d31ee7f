"""Fast Diffusion EM: the paper's Algorithm 2, as a configuration of the one loop (docs/design.md §4).

Algorithm 2 keeps ``n`` particles per image and one kernel estimate ``k`` (a Dirac at the start)
and, for i = S−1 … 0 (respaced steps; the network sees the original timestep τ_i), does

1. **E-step** — one guided DDPM step of the ``n`` particles: the network gives ``x̂0`` for all of
   them and the unguided ancestral step ``x'_{i−1}`` is drawn (:func:`fdem.sampling.loop.guided_step`,
   no noise at ``i = 0``);
2. **M-step** — on the current ``x̂0`` of the ``n`` particles (``u`` in ``[0, 1]``), HQS warm-started
   from the previous kernel (:meth:`fdem.mstep.MStepConfig.update` with ``init = k``, the hook
   below; optionally over-relaxed, ``relax``, except at the last step: docs/design.md §12). Its
   data weight is Eq. 24's ``α = nβσ²`` with Eq. 33's extra ``n·N·r_i²`` term under
   ``weighting="paper"``, the authors' ``α = σ²β`` under ``"official"`` (:func:`fdem.mstep.data_term`);
   ``r_i²`` follows the run's r² rule (:func:`fdem.sampling.guidance.r2_schedule`);
3. **re-centring** — the kernel is shifted so its centre of mass is at ``(k//2, k//2)``
   (:func:`fdem.kernel_ops.recenter`; on by default here, off in Diffusion EM);
4. **guidance** with that new kernel — DPS (Eq. 9) or ΠGDM (Eq. 11) of
   :mod:`fdem.sampling.guidance`, added to ``x'_{i−1}`` by one VJP through the network.

The loop runs steps 1, 2+3 (the hook) and 4 in this order; it returns the final particles and
the last kernel.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from fdem.diffusion import Schedule
from fdem.mstep import MStepConfig
from fdem.problem import BlurProblem
from fdem.sampling.guidance import r2_schedule
from fdem.sampling.loop import Loop, MStepHook


# Fast EM's default λ is a multiple of the Figure-4 λ of the kernel denoiser
# (:func:`fdem.mstep.default_lambda`, tuned with the *sharp* image known). Inside the sampler the
# M-step sees x̂0, a blurrier and partly wrong image, and with the Figure-4 λ the kernel follows its
# errors; the stronger prior keeps it on clean strokes. The multiple falls with the noise: the data
# term weighs 1/σ², so at high σ the same λ is a relatively stronger prior and over-smooths the
# kernel. (σ·255, multiple) pairs chosen on BSDS500 val crops (docs/fastem_study.md: λ ∈ {0.1, 0.2,
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


def fast_em_hook(
    problem: BlurProblem, mstep: MStepConfig, r2: list[float], *, weighting: str, recenter: bool
) -> MStepHook:
    """Steps 2 and 3 of Algorithm 2: the warm-started M-step on the particles at step ``i``, re-centred.
    Without a given λ (PnP), λ is :func:`fast_em_lambda_scale` × the Figure-4 λ, per image. An
    over-relaxed M-step (``mstep.relax`` ≠ 1, docs/design.md §12) is plain at the last step, ``i = 0``."""
    default = mstep.lam is None and mstep.reg == "pnp"
    scale = fast_em_lambda_scale(problem.sigma) if default else None

    def hook(u: Tensor, kernel: Tensor, i: int) -> Tensor:
        relax = None if i > 0 else 1.0  # the last kernel fits the last image, no extrapolation past it
        return mstep.update(problem, u, init=kernel, weighting=weighting, r2=r2[i], recenter=recenter, lam_scale=scale,
                            relax=relax)

    return hook


def run_fast_em(
    loop: Loop,
    schedule: Schedule,
    problem: BlurProblem,
    kernel: Tensor,
    mstep: MStepConfig,
    *,
    r2_rule: str,
    weighting: str,
) -> tuple[Tensor, Tensor]:
    """Algorithm 2 from the initial ``kernel``; returns ``(particles (B, n, C, H, W), kernel (B, 1, k, k))``."""
    recenter = True if mstep.recenter is None else mstep.recenter
    hook = fast_em_hook(problem, mstep, r2_schedule(schedule, r2_rule), weighting=weighting, recenter=recenter)
    return loop(kernel, mstep=hook)
