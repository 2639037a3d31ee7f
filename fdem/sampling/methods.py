"""The guided diffusion methods (docs/design.md §3) as one entry, :func:`run_method`, over the one loop
of :mod:`fdem.sampling.loop`.

==============  ==========  ==================================================================
method          guidance    kernel
==============  ==========  ==================================================================
dps, pigdm      DPS / ΠGDM  given (non-blind)
fastem-*        DPS / ΠGDM  Algorithm 2, :mod:`fdem.sampling.fast_em`
diffem-*        DPS / ΠGDM  Diffusion EM, :mod:`fdem.sampling.diffusion_em`
==============  ==========  ==================================================================

What a run does is a :class:`~fdem.presets.RunSpec` (a method under a preset, :func:`fdem.presets.resolve`);
every option was checked when it was built. Image ``b`` uses seed ``seed + b`` (or ``seed[b]``), so a
batch gives the same results as its images run one by one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import Sequence

import torch
from torch import Tensor

from fdem.baselines.alternation import wiener_alternation
from fdem.baselines.l0_anger import estimate_kernel_l0, make_params
from fdem.devices import synchronize
from fdem.diffusion import Schedule, start_schedule_steps, variance_kind
from fdem.errors import InputError
from fdem.kernel_ops import dirac, normalize_kernel
from fdem.light_streaks import streak_kernel
from fdem.padding import network_multiple
from fdem.physics import check_kernel_fits
from fdem.presets import RunSpec
from fdem.problem import BlurProblem
from fdem.sampling.coarse_start import coarse_kernel
from fdem.sampling.diffusion_em import run_diffusion_em
from fdem.sampling.fast_em import fast_em_hook
from fdem.sampling.guidance import make_guidance
from fdem.sampling.loop import NoiseSource, StepCallback, generator_noise, run_loop
from fdem.sampling.naturalness import denoising_loss
from fdem.sampling.restarts import average_chains, chain_seeds, keep_best, repeat_problem
from fdem.sampling.result import SamplingResult, TraceRecorder


def image_seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    """The seed of every image: ``seed + b``, or the given list (one per image)."""
    seeds = [seed + b for b in range(batch)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != batch:
        raise InputError(f"got {len(seeds)} seeds for {batch} images")
    return seeds


def make_generators(seed: int | Sequence[int], batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per image on ``device``, seeded by :func:`image_seeds`."""
    return [torch.Generator(device=device).manual_seed(s) for s in image_seeds(seed, batch)]


def alternation_kernel(problem: BlurProblem, spec: RunSpec) -> Tensor:
    """The ``(B, 1, k, k)`` kernel of the prior-free alternation on ``y`` with the M-step's kernel size
    and denoiser (its Figure-4 λ): the ``"alternation"`` kernel start (docs/design.md §11)."""
    mstep = spec.em.mstep
    return wiener_alternation(problem.y, problem.sigma, kernel_size=mstep.kernel_size, denoiser=mstep.denoiser)[1]


def l0_kernel(problem: BlurProblem, spec: RunSpec) -> Tensor:
    """The ``(B, 1, k, k)`` kernel of the ℓ0 baseline's coarse-to-fine estimation (its article settings) on
    ``y``'s grey level, of the M-step's size: the ``"l0"`` kernel start."""
    grey = problem.y.mean(dim=1, keepdim=True)
    return estimate_kernel_l0(grey, spec.em.mstep.kernel_size, make_params())


def streak_start(problem: BlurProblem, spec: RunSpec) -> Tensor:
    """The ``(B, 1, k, k)`` mean of the clipped light streaks of ``y`` at the saturation level
    (:mod:`fdem.light_streaks`); the alternation's kernel for an image without any: the ``"streak"`` kernel start."""
    kernel, found = streak_kernel(problem.measured, spec.em.mstep.kernel_size, spec.canvas.saturation)
    if bool(found.all()):
        return kernel
    return torch.where(found[:, None, None, None], kernel, alternation_kernel(problem, spec))


KERNEL_STARTS = {"alternation": alternation_kernel, "l0": l0_kernel, "streak": streak_start}  # kernel_init → estimator (the Dirac aside)


def initial_kernel(problem: BlurProblem, spec: RunSpec, kernel: Tensor | None) -> Tensor:
    """The kernel a run starts from, ``(B, 1, k, k)``: the true one (non-blind), a given start, or the
    EM's ``kernel_init`` (a Dirac of the M-step's size, the alternation's, ℓ0's or the light streaks'; for ``coarse`` a Dirac
    here, replaced by :func:`run_method` with the half-size pass's kernel, which needs the prior)."""
    batch, y = problem.y.shape[0], problem.y
    if kernel is None:
        if not spec.blind:
            raise InputError(f"method {spec.method} is non-blind: it needs the true kernel")
        if spec.em.kernel_init in KERNEL_STARTS:
            return KERNEL_STARTS[spec.em.kernel_init](problem, spec)
        return dirac(batch, spec.em.mstep.kernel_size, y.device, y.dtype)
    cells = getattr(problem, "cells", 1)
    if kernel.dim() != 4 or kernel.shape[1] not in (1, cells) or kernel.shape[0] not in (1, batch) or kernel.shape[-1] != kernel.shape[-2]:
        raise InputError(f"kernel must be (B, {cells}, k, k) or (1, {cells}, k, k) for {batch} images"
                         + (" (or one kernel per image, (B, 1, k, k))" if cells > 1 else "") + f", got {tuple(kernel.shape)}")
    return normalize_kernel(kernel.to(y.device, y.dtype)).expand(batch, -1, -1, -1).contiguous()


def spread_over_cells(problem: BlurProblem, kernel: Tensor) -> Tensor:
    """One kernel per image ``(B, 1, k, k)`` as the same kernel in every cell of a field problem
    (``(B, M, k, k)``); a field, or a uniform problem's kernel, as it is."""
    cells = getattr(problem, "cells", 1)
    return kernel.expand(-1, cells, -1, -1).contiguous() if kernel.shape[1] == 1 and cells > 1 else kernel


def sampling_schedule(spec: RunSpec, prior, device: torch.device) -> Schedule:
    """The prior's schedule respaced for ``spec``: ``steps`` calls over ``[0, start·T]`` (the whole
    respacing is longer when the chain starts from the noised observation, docs/design.md §8)."""
    sampler = spec.sampler
    return prior.schedule.build(start_schedule_steps(sampler.steps, sampler.start, prior.schedule.T), device)


def run_method(
    spec: RunSpec,
    prior,
    problem: BlurProblem,
    *,
    kernel: Tensor | None = None,
    seed: int | Sequence[int] = 0,
    callback: StepCallback | None = None,
    trace_every: int = 0,
    noise: NoiseSource | None = None,
) -> SamplingResult:
    """Restore ``problem.y (B, C, H, W)`` in ``[0, 1]`` (H, W a multiple of the network's) as ``spec`` says.

    ``prior``: a :class:`~fdem.priors.Prior`, the score network and its training schedule. ``kernel``: the true kernel for
    ``dps``/``pigdm``; for the blind methods an optional start (default: the EM's ``kernel_init``).
    ``callback(u, kernel)`` runs after every step (e.g. a progress bar); ``trace_every > 0`` records
    a :class:`~fdem.sampling.result.Trace`. ``noise`` replaces the per-image generators (a test's
    injected noise, :data:`~fdem.sampling.loop.NoiseSource`). With ``restarts`` = K, K chains per
    image run as one batch and the one of smallest data misfit is kept, or with ``combine = mean`` their
    mean (:mod:`fdem.sampling.restarts`).
    Fast EM runs ``passes`` times, each pass from the last kernel; with ``refine`` a blind run is followed
    by a non-blind one with its last kernel (fresh draws).
    """
    em, batch, device = spec.em, problem.y.shape[0], problem.y.device
    began = time.perf_counter()
    kernel_given, kernel = kernel, initial_kernel(problem, spec, kernel)
    check_kernel_fits(tuple(kernel.shape[-2:]), problem.shape)
    seeds = chain_seeds(image_seeds(seed, batch), em.restarts)
    if em.restarts > 1:
        problem, kernel = repeat_problem(problem, em.restarts), kernel.repeat(em.restarts, 1, 1, 1)
    schedule = sampling_schedule(spec, prior, device)
    guidance = make_guidance(spec.guidance, schedule, spec.sampler, spec.kernel_uncertainty, em.restarts)
    recorder = TraceRecorder(trace_every) if trace_every > 0 else None
    noise = noise or generator_noise(make_generators(seeds, len(seeds), device))

    def loop(start_kernel: Tensor, mstep=None, on: BlurProblem | None = None) -> tuple[Tensor, Tensor]:
        """The chains on ``problem`` (or on ``on``, the coarse start's half-size problem: not traced)."""
        traced = recorder if on is None else None
        return run_loop(prior.net, schedule, on or problem, guidance, start_kernel, noise, spec.sampler,
                        particles=em.particles, mstep=mstep, var_kind=variance_kind(prior.schedule, False),
                        callbacks=[c for c in (callback, traced) if c])

    if kernel_given is None and em.kernel_init == "coarse":  # kernel_given is None only for blind methods
        kernel = coarse_kernel(spec, problem, network_multiple(prior.net), lambda half, half_spec: loop(
            alternation_kernel(half, half_spec), fast_em_hook(half, schedule, half_spec), half)[1])
    kernel = spread_over_cells(problem, kernel)
    if spec.em_kind == "fastem":
        for _ in range(em.passes):  # each pass starts from the last one's kernel
            samples, kernel = loop(kernel, fast_em_hook(problem, schedule, spec))
    elif spec.em_kind == "diffem":
        samples, kernel = run_diffusion_em(loop, problem, kernel, em)
    else:
        samples, _ = loop(kernel)
    if spec.refined:  # two-stage: the same sampler again, the kernel now fixed (docs/design.md §14)
        samples, _ = loop(kernel)
    synchronize(device)
    trace = recorder.trace(blind=spec.blind) if recorder else None
    result = SamplingResult(spec.method, samples.mean(dim=1), samples, kernel if spec.blind else None, 0.0, trace)
    if em.restarts > 1 and em.combine == "mean":
        result = average_chains(result, em.restarts)
    elif em.restarts > 1:
        natural = em.combine == "natural"
        cost = (denoising_loss(prior.net, prior.schedule.build(None, device), result.image) if natural
                else problem.misfit(result.image, kernel))
        result = keep_best(result, cost, em.restarts)
    return replace(result, seconds=time.perf_counter() - began)
