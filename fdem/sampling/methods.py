"""The named methods (docs/design.md §3) as configurations of the one loop of :mod:`fdem.sampling.loop`.

==============  ==========  ==================================================================
method          guidance    kernel
==============  ==========  ==================================================================
dps, pigdm      DPS / ΠGDM  given (non-blind)
fastem-*        DPS / ΠGDM  Algorithm 2, :mod:`fdem.sampling.fast_em`
diffem-*        DPS / ΠGDM  Diffusion EM, :mod:`fdem.sampling.diffusion_em`
==============  ==========  ==================================================================

Defaults follow the authors' code: the prior's schedule (``ScheduleSpec()``: T = 1000 linear
betas) respaced to 100 steps for ΠGDM and 1000 for DPS, ``fixed_small`` variances, Dirac kernel
start, 10 HQS iterations, β = 1e5, the M-step getting the observation's σ. Two choices differ
between the authors' code and the paper, and are named options: ``r2_rule`` (ΠGDM's and the
M-step's r², :func:`~fdem.sampling.guidance.r2_schedule`) and ``weighting`` (the M-step's α and
Eq. 33 term, :func:`~fdem.mstep.data_term`). ``mode`` is a preset of both (:data:`MODES`); an
explicit ``r2_rule`` or ``weighting`` overrides it. Image ``b`` uses seed ``seed + b`` (or
``seed[b]``), so a batch gives the same results as its images run one by one.
"""

from __future__ import annotations

import time
from dataclasses import replace
from functools import partial
from typing import Sequence

import torch
from torch import Tensor, nn

from fdem.baselines.alternation import wiener_alternation
from fdem.devices import synchronize
from fdem.diffusion import ScheduleSpec, check_start, check_step_rule, check_steps, start_schedule_steps, variance_kind
from fdem.errors import InputError
from fdem.kernel_ops import dirac, normalize_kernel
from fdem.method_table import METHODS as TABLE_METHODS, Method, lookup
from fdem.mstep import MStepConfig, check_weighting
from fdem.physics import check_kernel_fits
from fdem.problem import BlurProblem
from fdem.sampling.diffusion_em import run_diffusion_em
from fdem.sampling.fast_em import run_fast_em
from fdem.sampling.guidance import check_dps_step_rule, check_r2_rule, make_guidance
from fdem.sampling.loop import StepCallback, run_loop
from fdem.sampling.restarts import chain_seeds, check_restarts, keep_best, repeat_chains
from fdem.sampling.result import SamplingResult, TraceRecorder

METHODS = tuple(m.name for m in TABLE_METHODS if m.guidance is not None)  # the guided samplers of the method table
MODES = {"official": ("official", "official"), "paper": ("paper", "paper")}  # mode -> (r2_rule, weighting)
# Where a blind method's kernel starts (docs/design.md §11): the paper's Dirac, or the kernel of the
# prior-free Wiener alternation (:func:`~fdem.baselines.alternation.wiener_alternation`, about half a
# second per 128² image on one CPU thread), which keeps a chain started from the noised observation
# out of the no-blur solution.
KERNEL_INITS = ("dirac", "alternation")


def sampler_entry(method: str) -> Method:
    """The method table's entry of a guided sampler (``dps``, ``pigdm``, ``fastem-*``, ``diffem-*``)."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    return lookup(method)


def resolve_mode(mode: str, r2_rule: str | None = None, weighting: str | None = None) -> tuple[str, str]:
    """``(r2_rule, weighting)`` of the preset ``mode``, each overridden when given; all validated."""
    if mode not in MODES:
        raise InputError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    preset_rule, preset_weighting = MODES[mode]
    r2_rule, weighting = r2_rule or preset_rule, weighting or preset_weighting
    check_r2_rule(r2_rule)
    check_weighting(weighting)
    return r2_rule, weighting


def total_steps(method: str, steps: int | None = None, em_iters: int = 10) -> int:
    """Number of network calls (= loop callbacks) per image that ``method`` makes."""
    return sampler_entry(method).net_calls(steps, em_iters)


def image_seeds(seed: int | Sequence[int], batch: int) -> list[int]:
    """The seed of every image: ``seed + b``, or the given list (one per image)."""
    seeds = [seed + b for b in range(batch)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != batch:
        raise InputError(f"got {len(seeds)} seeds for {batch} images")
    return seeds


def make_generators(seed: int | Sequence[int], batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per image on ``device``, seeded by :func:`image_seeds`."""
    return [torch.Generator(device=device).manual_seed(s) for s in image_seeds(seed, batch)]


def check_kernel_init(kernel_init: str, name: str = "kernel_init") -> str:
    """``kernel_init`` if it is one of :data:`KERNEL_INITS`, else an :class:`InputError` naming ``name``."""
    if kernel_init not in KERNEL_INITS:
        raise InputError(f"unknown {name} {kernel_init!r}: choose one of {', '.join(KERNEL_INITS)}")
    return kernel_init


def alternation_kernel(y: Tensor, sigma: float | Tensor, mstep: MStepConfig) -> Tensor:
    """The ``(B, 1, k, k)`` kernel of the prior-free alternation on ``y`` with the M-step's kernel
    size and denoiser (its Figure-4 λ): the ``"alternation"`` start of :data:`KERNEL_INITS`."""
    return wiener_alternation(y, sigma, kernel_size=mstep.kernel_size, denoiser=mstep.denoiser)[1]


def _initial_kernel(kernel: Tensor | None, batch: int, size: int, like: Tensor, blind: bool, method: str) -> Tensor:
    if kernel is None:
        if not blind:
            raise InputError(f"method {method} is non-blind: it needs the true kernel")
        return dirac(batch, size, like.device, like.dtype)
    if kernel.dim() != 4 or kernel.shape[1] != 1 or kernel.shape[0] not in (1, batch) or kernel.shape[-1] != kernel.shape[-2]:
        raise InputError(f"kernel must be (B, 1, k, k) or (1, 1, k, k) for {batch} images, got {tuple(kernel.shape)}")
    return normalize_kernel(kernel.to(like.device, like.dtype)).expand(batch, -1, -1, -1).contiguous()


def run_method(
    method: str,
    net: nn.Module,
    y: Tensor,
    sigma: float | Tensor,
    *,
    kernel: Tensor | None = None,
    mstep: MStepConfig = MStepConfig(),
    particles: int = 1,
    steps: int | None = None,
    seed: int | Sequence[int] = 0,
    mode: str = "official",
    r2_rule: str | None = None,
    weighting: str | None = None,
    em_iters: int = 10,
    schedule: ScheduleSpec = ScheduleSpec(),
    learned_variance: bool = False,
    trace_every: int = 0,
    callback: StepCallback | None = None,
    step_rule: str = "ddpm",
    eta: float = 1.0,
    start: float = 1.0,
    observed: Tensor | None = None,
    restarts: int = 1,
    kernel_init: str = "dirac",
) -> SamplingResult:
    """Restore the blurry ``y (B, C, H, W)`` in ``[0, 1]`` (H, W a multiple of the network's) with ``method``.

    ``sigma``: noise level in ``[0, 1]`` units (float or one per image). ``kernel``: the true kernel
    for ``dps``/``pigdm``; for the blind methods an optional initial kernel (default: Dirac of
    ``mstep.kernel_size``). ``steps`` overrides the respaced step count of the prior's ``schedule``,
    ``em_iters`` is Diffusion EM's L, ``learned_variance`` uses the network's variance channels
    (when ``schedule.learned_sigma``) instead of β̃. ``callback(u, kernel)`` runs after every step
    (e.g. a progress bar); ``trace_every > 0`` records a :class:`Trace`. ``step_rule`` is the
    unguided update, ``"ddpm"`` (ancestral) or ``"ddim"`` with ``eta`` in [0, 1] (η = 1: the
    ancestral noise level, η = 0: deterministic), or ``"mean"`` (ΠGDM methods: the DDIM step from
    ΠGDM's posterior mean of x0, no VJP); the guidance weights follow it (docs/design.md §8).
    ``start`` < 1 starts from the observation noised to ``start·T`` and spends the ``steps``
    network calls on ``[0, start·T]`` only. ``observed`` (``(B or 1, 1, H, W)``, 1 = measured) marks
    pixels of ``y`` as missing, e.g. a padded margin: they are imputed every step
    (:meth:`~fdem.problem.BlurProblem.impute`). ``restarts`` = K runs K chains per image (as one batch,
    K times the network calls) and keeps the one of smallest data misfit (:mod:`fdem.sampling.restarts`).
    ``kernel_init`` (blind methods without a given ``kernel``): ``"dirac"`` (the paper's) or
    ``"alternation"`` (:func:`alternation_kernel`, computed once per image before the chains split).
    """
    entry = sampler_entry(method)
    guidance_name, em = entry.guidance, entry.em
    r2_rule, weighting = resolve_mode(mode, r2_rule, weighting)
    eta, start = check_step_rule(step_rule, eta), check_start(start)
    if guidance_name == "dps":
        check_dps_step_rule(step_rule)
    check_steps(steps)
    check_kernel_init(kernel_init)
    if particles < 1 or em_iters < 1:
        raise InputError(f"particles and em_iters must be >= 1, got {particles} and {em_iters}")
    seeds = chain_seeds(image_seeds(seed, y.shape[0]), check_restarts(restarts))
    began = time.perf_counter()
    if kernel is None and em is not None and kernel_init == "alternation":
        kernel = alternation_kernel(y, sigma, mstep)
    if restarts > 1:
        y, sigma, observed, kernel = (repeat_chains(t, restarts, y.shape[0]) for t in (y, sigma, observed, kernel))
    problem = BlurProblem(y, sigma, observed)
    batch, device = y.shape[0], y.device
    kernel = _initial_kernel(kernel, batch, mstep.kernel_size, y, em is not None, method)
    check_kernel_fits(tuple(kernel.shape[-2:]), problem.shape)

    calls = steps or entry.default_steps
    respaced = schedule.build(start_schedule_steps(calls, start, schedule.T), device)
    recorder = TraceRecorder(trace_every) if trace_every > 0 else None
    step = (step_rule, eta) if step_rule != "ddpm" else ()  # the ancestral rule: the call as before
    loop = partial(
        run_loop, net, respaced, problem, make_guidance(guidance_name, respaced, r2_rule, *step),
        generators=make_generators(seeds, batch, device), particles=particles, step_rule=step_rule, eta=eta,
        first=calls if start < 1 else None,
        var_kind=variance_kind(schedule, learned_variance), callbacks=[c for c in (callback, recorder) if c],
    )
    if em == "fastem":
        samples, kernel = run_fast_em(loop, respaced, problem, kernel, mstep, r2_rule=r2_rule, weighting=weighting)
    elif em == "diffem":
        samples, kernel = run_diffusion_em(loop, problem, kernel, mstep, iters=em_iters, weighting=weighting)
    else:
        samples, _ = loop(kernel)
    synchronize(device)
    trace = recorder.trace(blind=em is not None) if recorder else None
    result = SamplingResult(method, samples.mean(dim=1), samples, kernel if em else None, 0.0, trace)
    if restarts > 1:
        result = keep_best(result, problem.misfit(result.image, kernel), restarts)
    return replace(result, seconds=time.perf_counter() - began)
