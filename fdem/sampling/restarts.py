"""Restarts: run ``K`` independent chains per image and keep the one that explains ``y`` best, or their mean.

The blind sampler is chaotic at few steps: whether a large kernel is found or an early, wrong
kernel locks the trajectory into a wrong image depends on the noise drawn (studies/fastem/NOTES.md).
A wrong (image, kernel) pair explains the observation worse, so among ``K`` chains the one with the
smallest data misfit ``‖y − k̂ ⊛ x̂‖²`` over the measured pixels
(:meth:`~fdem.problem.BlurProblem.misfit`) is kept. It needs no ground truth, and costs ``K`` times
the network calls (the chains run as one batch).

When the misfit cannot tell the chains apart (with the margin imputed it picks at chance level,
docs/design.md §10), ``combine = mean`` keeps their mean instead: the image averaged over the chains (a
Monte-Carlo posterior mean, whose squared error is below a single sample's by the chains' spread) and
the kernels averaged (all centred alike, so they add without shifting). ``combine = natural`` keeps
the chain whose image the prior finds most natural (the smallest denoising loss,
:mod:`fdem.sampling.naturalness`).

Chain ``j`` of an image with seed ``s`` uses seed ``s + j·RESTART_SEED_STRIDE``: chain 0 is the
run without restarts, so ``restarts = 1`` changes nothing and a batch still gives the same results
as its images run one by one.
"""

from __future__ import annotations

from dataclasses import replace

import torch
from torch import Tensor

from fdem.problem import BlurProblem
from fdem.sampling.result import SamplingResult

RESTART_SEED_STRIDE = 1_000_003  # a prime larger than any batch: chains never share a seed with another image's


def chain_seeds(seeds: list[int], restarts: int) -> list[int]:
    """The seeds of all chains, chain-major: chain ``j`` of image ``b`` is ``seeds[b] + j·stride``."""
    return [s + j * RESTART_SEED_STRIDE for j in range(restarts) for s in seeds]


def repeat_problem(problem: BlurProblem, restarts: int) -> BlurProblem:
    """The problem of ``K·B`` chains, chain-major: chain ``j`` of image ``b`` is row ``j·B + b``."""
    return problem.repeat(restarts)


def keep_best(result: SamplingResult, cost: Tensor, restarts: int) -> SamplingResult:
    """From a result of ``K·B`` chains (chain-major) and their ``cost (K·B,)`` (the misfit, or with
    ``combine = natural`` the prior's denoising loss), the ``B`` chains of smallest cost."""
    batch = cost.shape[0] // restarts
    chosen = cost.reshape(restarts, batch).argmin(dim=0)
    index = chosen * batch + torch.arange(batch, device=chosen.device)

    def pick(t: Tensor | None, dim: int = 0) -> Tensor | None:
        return None if t is None else t.index_select(dim, index.to(t.device))

    trace = result.trace and replace(result.trace, x0=pick(result.trace.x0, 1), kernel=pick(result.trace.kernel, 1))
    return replace(result, image=pick(result.image), particles=pick(result.particles), kernel=pick(result.kernel),
                   trace=trace)


def average_chains(result: SamplingResult, restarts: int) -> SamplingResult:
    """From a result of ``K·B`` chains (chain-major), per image the mean image and kernel of its ``K`` chains,
    all ``K·n`` particles, and the mean trace."""
    batch = result.image.shape[0] // restarts

    def mean(t: Tensor | None, dim: int = 0) -> Tensor | None:
        return None if t is None else t.unflatten(dim, (restarts, batch)).mean(dim=dim)

    particles = result.particles.unflatten(0, (restarts, batch)).transpose(0, 1).flatten(1, 2)
    trace = result.trace and replace(result.trace, x0=mean(result.trace.x0, 1), kernel=mean(result.trace.kernel, 1))
    return replace(result, image=mean(result.image), particles=particles, kernel=mean(result.kernel), trace=trace)
