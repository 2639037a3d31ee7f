"""Fast Diffusion EM: the paper's Algorithm 2, as a configuration of the one loop (docs/design.md §4).

Algorithm 2 keeps ``n`` particles per image and one kernel estimate ``k`` (a Dirac at the start)
and, for i = S−1 … 0 (respaced steps; the network sees the original timestep τ_i), does

1. **E-step** — one guided DDPM step of the ``n`` particles: the network gives ``x̂0`` for all of
   them and the unguided ancestral step ``x'_{i−1}`` is drawn (:func:`fdem.sampling.loop.guided_step`,
   no noise at ``i = 0``);
2. **M-step** — on the current ``x̂0`` of the ``n`` particles (``u`` in ``[0, 1]``), HQS warm-started
   from the previous kernel (:meth:`fdem.mstep.MStepConfig.update` with ``init = k``, the hook
   below). Its data weight is Eq. 24's ``α = nβσ²`` with Eq. 33's extra ``n·N·r_i²`` term under
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

from dataclasses import replace

from torch import Tensor

from fdem.diffusion import Schedule
from fdem.mstep import MStepConfig
from fdem.problem import BlurProblem
from fdem.sampling.guidance import r2_schedule
from fdem.sampling.loop import Loop, MStepHook


# Fast EM's default λ is this multiple of the Figure-4 λ of the kernel denoiser
# (:func:`fdem.mstep.default_lambda`, tuned with the *sharp* image known). Inside the sampler the
# M-step sees x̂0, a blurrier and partly wrong image, and with the Figure-4 λ the kernel follows its
# errors; the stronger prior keeps it on clean strokes. Chosen on BSDS500 val crops
# (docs/fastem_study.md: λ ∈ {0.1, 0.2, 0.3, 0.5, 1} for the 33×33 denoiser).
FAST_EM_LAMBDA_SCALE = 3.0


def fast_em_mstep(mstep: MStepConfig) -> MStepConfig:
    """``mstep`` with Fast EM's default λ (:data:`FAST_EM_LAMBDA_SCALE` × the Figure-4 λ) when none is given."""
    if mstep.lam is not None or mstep.reg != "pnp":
        return mstep
    return replace(mstep, lam=FAST_EM_LAMBDA_SCALE * mstep.resolved_lam)


def fast_em_hook(
    problem: BlurProblem, mstep: MStepConfig, r2: list[float], *, weighting: str, recenter: bool
) -> MStepHook:
    """Steps 2 and 3 of Algorithm 2: the warm-started M-step on the particles at step ``i``, re-centred."""

    def hook(u: Tensor, kernel: Tensor, i: int) -> Tensor:
        return mstep.update(problem, u, init=kernel, weighting=weighting, r2=r2[i], recenter=recenter)

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
    hook = fast_em_hook(problem, fast_em_mstep(mstep), r2_schedule(schedule, r2_rule), weighting=weighting, recenter=recenter)
    return loop(kernel, mstep=hook)
