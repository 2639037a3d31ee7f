"""The named methods (DESIGN.md §3) as configurations of the one loop of :mod:`fdem.sampling.loop`.

==============  ==========  ==================================================================
method          guidance    kernel
==============  ==========  ==================================================================
dps, pigdm      DPS / ΠGDM  given (non-blind)
fastem-*        DPS / ΠGDM  M-step at every step on the current x̂0 of the n particles (warm
                            start), re-centred on its centre of mass, then the guidance (Alg. 2)
diffem-*        DPS / ΠGDM  L outer rounds: n fresh non-blind samples with the current kernel,
                            then the M-step on those final samples (no re-centring)
==============  ==========  ==================================================================

Defaults follow the authors' code: T = 1000 linear betas respaced to 100 steps for ΠGDM and
1000 for DPS, ``fixed_small`` variances, Dirac kernel start, 10 HQS iterations, β = 1e5, the M-step
getting the observation's σ. ``mode="paper"`` switches to the paper's α = nβσ², its
expected-likelihood M-step with ``r² = 1 − ᾱ_i`` (Fast EM; final samples have ``r² = 0``) and
ΠGDM's ``r² = 1 − ᾱ_i``. Image ``b`` uses seed ``seed + b`` (or ``seed[b]``), so a batch gives the
same results as its images run one by one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from fdem.diffusion import Schedule
from fdem.errors import InputError
from fdem.kernel_ops import dirac, normalize_kernel, recenter
from fdem.mstep import estimate_kernel
from fdem.physics import as_batch_sigma, check_kernel_fits
from fdem.restorers import synchronize
from fdem.sampling.guidance import R_RULES, make_guidance, r2_schedule
from fdem.sampling.loop import StepCallback, run_loop
from fdem.sampling.result import SamplingResult, TraceRecorder

METHODS = ("dps", "pigdm", "fastem-dps", "fastem-pigdm", "diffem-dps", "diffem-pigdm")
DEFAULT_STEPS = {"dps": 1000, "pigdm": 100}


@dataclass(frozen=True)
class MStepConfig:
    """The kernel update of Fast EM and Diffusion EM (arguments of :func:`fdem.mstep.estimate_kernel`).

    ``recenter=None`` means the authors' choice: re-centre in Fast EM, not in Diffusion EM.
    """

    kernel_size: int = 33
    reg: str = "pnp"
    lam: float | None = None
    beta: float = 1e5
    iters: int = 10
    recenter: bool | None = None
    denoiser: Callable | None = None

    def update(self, y: Tensor, x: Tensor, sigma: Tensor, init: Tensor, mode: str, r2: float, recentre: bool) -> Tensor:
        """HQS from ``init`` on the particles ``x (B, n, C, H, W)``, then optionally re-centred."""
        kernel = estimate_kernel(
            y, x, sigma, init.shape[-1], self.reg, self.lam, self.beta, self.iters, init, self.denoiser, mode, r2
        )
        return recenter(kernel) if recentre else kernel


def parse_method(method: str) -> tuple[str, str | None]:
    """``"fastem-pigdm"`` → ``("pigdm", "fastem")``; ``"dps"`` → ``("dps", None)``."""
    if method not in METHODS:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS)}")
    em, _, guidance = method.rpartition("-")
    return guidance, em or None


def total_steps(method: str, steps: int | None = None, em_iters: int = 10) -> int:
    """Number of network calls (= loop callbacks) per image that ``method`` makes."""
    guidance, em = parse_method(method)
    return (steps or DEFAULT_STEPS[guidance]) * (em_iters if em == "diffem" else 1)


def make_generators(seed: int | Sequence[int], batch: int, device: torch.device) -> list[torch.Generator]:
    """One generator per image on ``device``: seeds ``seed + b``, or the given list."""
    seeds = [seed + b for b in range(batch)] if isinstance(seed, int) else [int(s) for s in seed]
    if len(seeds) != batch:
        raise InputError(f"got {len(seeds)} seeds for {batch} images")
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


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
    em_iters: int = 10,
    var_kind: str = "fixed_small",
    schedule_kind: str = "linear",
    trace_every: int = 0,
    callback: StepCallback | None = None,
) -> SamplingResult:
    """Restore the blurry ``y (B, C, H, W)`` in ``[0, 1]`` (H, W a multiple of the network's) with ``method``.

    ``sigma``: noise level in ``[0, 1]`` units (float or one per image). ``kernel``: the true kernel
    for ``dps``/``pigdm``; for the blind methods an optional initial kernel (default: Dirac of
    ``mstep.kernel_size``). ``steps`` overrides the respaced step count, ``em_iters`` is Diffusion
    EM's L. ``callback(u, kernel)`` runs after every step (e.g. a progress bar); ``trace_every > 0``
    records a :class:`Trace`.
    """
    guidance_name, em = parse_method(method)
    if mode not in R_RULES:
        raise InputError(f"unknown mode {mode!r}: choose one of {', '.join(R_RULES)}")
    if y.dim() != 4:
        raise InputError(f"y must be (B, C, H, W), got shape {tuple(y.shape)}")
    if particles < 1 or em_iters < 1:
        raise InputError(f"particles and em_iters must be >= 1, got {particles} and {em_iters}")
    batch, device = y.shape[0], y.device
    sigma = as_batch_sigma(sigma, batch, y).reshape(-1)
    if bool((sigma < 0).any()):
        raise InputError("sigma must be >= 0")
    kernel = _initial_kernel(kernel, batch, mstep.kernel_size, y, em is not None, method)
    check_kernel_fits(tuple(kernel.shape[-2:]), tuple(y.shape[-2:]))

    start = time.perf_counter()
    schedule = Schedule.make(1000, steps or DEFAULT_STEPS[guidance_name], schedule_kind, device)
    guidance = make_guidance(guidance_name, schedule, mode)
    generators = make_generators(seed, batch, device)
    recorder = TraceRecorder(trace_every) if trace_every > 0 else None
    callbacks = [c for c in (callback, recorder) if c is not None]

    def loop(k: Tensor, hook=None) -> tuple[Tensor, Tensor]:
        return run_loop(net, schedule, y, sigma, guidance, k, generators, particles, hook, var_kind, callbacks)

    recentre = (em == "fastem") if mstep.recenter is None else mstep.recenter
    if em == "fastem":
        r2 = r2_schedule(schedule, mode)
        samples, kernel = loop(kernel, lambda u, k, i: mstep.update(y, u, sigma, k, mode, r2[i], recentre))
    elif em == "diffem":
        for _ in range(em_iters):
            samples, _ = loop(kernel)
            kernel = mstep.update(y, samples, sigma, kernel, mode, 0.0, recentre)
    else:
        samples, _ = loop(kernel)
    synchronize(device)
    return SamplingResult(
        method=method,
        image=samples.mean(dim=1),
        particles=samples,
        kernel=kernel if em else None,
        seconds=time.perf_counter() - start,
        trace=recorder.trace(blind=em is not None) if recorder else None,
    )
