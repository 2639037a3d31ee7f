"""Diffusion EM, the slow EM that Fast EM speeds up: L full non-blind runs of the one loop (docs/design.md §4).

From an initial kernel ``k`` (a Dirac), each of the ``L`` outer iterations does

1. **E-step** — ``n`` fresh posterior samples with the *fixed* current kernel: a whole run of
   :func:`fdem.sampling.loop.run_loop` with the guidance (DPS, Eq. 9, or ΠGDM, Eq. 11) and no
   per-step M-step. Image ``b``'s generator is not reset, so every round draws new noise;
2. **M-step** — on the ``n`` final samples (``u`` in ``[0, 1]``), warm-started from ``k``
   (:meth:`fdem.mstep.MStepConfig.update`; Eq. 24 ``α = nβσ²`` under ``weighting="paper"``, where
   final samples have ``r² = 0`` so Eq. 33's extra term vanishes). No re-centring (the authors'
   choice; Fast EM re-centres).

Returns the last round's samples and the last kernel.
"""

from __future__ import annotations

from torch import Tensor

from fdem.problem import BlurProblem
from fdem.sampling.loop import Loop


def run_diffusion_em(loop: Loop, problem: BlurProblem, kernel: Tensor, em) -> tuple[Tensor, Tensor]:
    """``em.em_iters`` = L rounds of (sample with the kernel, re-estimate the kernel) for an
    :class:`~fdem.presets.EMSpec`; returns ``(particles, kernel)``."""
    for _ in range(em.em_iters):
        samples, _ = loop(kernel)
        kernel = em.mstep.update(problem, samples, init=kernel, weighting=em.weighting, r2=0.0, recenter=False,
                                 relax=em.kernel_relax)
    return samples, kernel
