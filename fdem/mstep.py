"""The M-step: kernel estimation from sharp estimates by half-quadratic splitting (docs/design.md §4).

Given the blurry ``y`` and ``n`` sharp estimates ``x_p`` of each image, HQS alternates

* a data step, solved exactly in Fourier, per colour channel, then averaged over channels::

      Z = F⁻¹[(Σ_p conj(X_p)·Y + α·F(k)) / (Σ_p |X_p|² + α + extra)]

  cropped to ``k x k``, clipped at 0 and normalised;
* a prior step on ``Z``: the Plug-and-Play denoiser ``D(Z, √(λ/β))`` ("pnp"), soft
  thresholding ``max(Z − λ/β, 0)`` ("l1"), or nothing ("l2", whose ``λ‖k‖²`` term sits in the
  data step as ``extra += 2σ²λ``: after the sum-to-one projection a separate ℓ2 shrinkage would be
  a uniform scale and change nothing), followed by the same projection.

The ``weighting`` of the data step (:func:`data_term`, the one place both equations live):

* ``"official"`` (the authors' code): ``α = σ²β``, ``extra = 0``;
* ``"paper"``: Eq. 24's ``α = nβσ²`` and Eq. 33's expected likelihood
  ``Σ_p E‖y − x ⊛ z‖²`` over ``x ~ N(x_p, r²I)``, which adds ``extra = n·N·r²`` (``N = H·W``, ``r²``
  the particles' posterior variance in ``[0, 1]`` units).

:class:`MStepConfig` holds the choices (validated once, when it is built); :func:`estimate_kernel`
is the functional form. ``y``'s FFT comes from the run's :class:`~fdem.problem.BlurProblem`, the
particles' FFTs are computed once per M-step and reused by every HQS iteration; everything stays on
the input's device.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_ops import dirac, normalize_kernel, recenter as recenter_bilinear
from fdem.masked_mstep import MaskedKernelDataTerm
from fdem.spline_shift import recenter_spline
from fdem.physics import check_kernel_fits, full_to_kernel, psf2otf
from fdem.problem import BlurProblem
from fdem.validate import check_float

REGULARISERS = ("pnp", "l1", "l2")
MAX_RELAX = 4.0  # the kernel over-relaxation's open upper bound (measured up to 2, studies/fastem/NOTES.md)
WEIGHTINGS = ("official", "paper")
MISSING = ("impute", "exclude")  # unobserved pixels in the data step: refilled by the model, or left out


def check_weighting(weighting: str) -> None:
    """Raise an :class:`InputError` unless ``weighting`` is one of :data:`WEIGHTINGS`."""
    if weighting not in WEIGHTINGS:
        raise InputError(f"unknown M-step weighting {weighting!r}: choose one of {', '.join(WEIGHTINGS)}")


def check_relax(value, name: str = "kernel relaxation") -> float:
    """The kernel over-relaxation γ as a float if it lies in ``(0, MAX_RELAX)``, else an :class:`InputError` naming ``name``."""
    return check_float(value, name, 0, MAX_RELAX, inclusive=False)


def default_lambda(kernel_size: int, denoiser=None) -> float:
    """The PnP weight λ that goes with the denoiser.

    No denoiser (the shipped one is loaded) or a shipped one: the λ tuned for it
    (``SHIPPED_LAMBDA``, from the Figure-4 benchmark, carried as ``denoiser.recommended_lambda``);
    any other network, e.g. the authors': their λ, 1 for 33×33 kernels and 0.2 for 64×64.
    """
    if denoiser is None:
        from fdem.nets.kernel_denoiser import SHIPPED_LAMBDA

        return SHIPPED_LAMBDA[33 if kernel_size <= 48 else 64]
    recommended = getattr(denoiser, "recommended_lambda", None)
    if recommended is not None:
        return recommended
    return 1.0 if kernel_size <= 48 else 0.2


class KernelDataTerm:
    """Precomputed Fourier terms of ``Σ_p ||y − x_p ⊛ z||² + α||z − k||² + extra·||z||²``.

    ``solve(k)`` returns the minimiser ``z`` (solved per channel, averaged over channels, cropped
    to the kernel window), before any projection. The channel average is linear, so it is taken
    in Fourier once: ``mean_c Z_c = mean_c(N_c/D_c) + α·mean_c(1/D_c)·K``, and each HQS iteration
    costs one kernel FFT and one inverse FFT per image.
    """

    def __init__(self, problem: BlurProblem, x: Tensor, *, alpha: Tensor, extra: Tensor | float = 0.0):
        self.shape = problem.shape
        fx = torch.fft.rfft2(x)  # (B, n, C, H, W')
        alpha = alpha.reshape(-1, 1, 1, 1)
        extra = extra.reshape(-1, 1, 1, 1) if torch.is_tensor(extra) else extra
        numerator = (fx.conj() * problem.y_hat.unsqueeze(1)).sum(dim=1)
        inv_denominator = 1.0 / ((fx.abs() ** 2).sum(dim=1) + alpha + extra + 1e-12)
        self.offset = (numerator * inv_denominator).mean(dim=1, keepdim=True)
        self.gain = alpha * inv_denominator.mean(dim=1, keepdim=True)

    def solve(self, kernel: Tensor) -> Tensor:
        spectrum = self.offset + self.gain * psf2otf(kernel, self.shape)
        return full_to_kernel(torch.fft.irfft2(spectrum, s=self.shape), kernel.shape[-2:])


@lru_cache(maxsize=8)
def _shipped_denoiser(kernel_size: int, device: str):
    from fdem.nets.kernel_denoiser import denoiser_for_kernel

    return denoiser_for_kernel(kernel_size, device=device)


RECENTER_RULES = {"spline": recenter_spline, "bilinear": recenter_bilinear, "none": lambda k: k}


@dataclass(frozen=True)
class MStepConfig:
    """The kernel update of Fast EM and Diffusion EM: HQS with ``iters`` iterations, penalty ``beta``,
    regulariser ``reg`` of weight ``lam`` (None: :func:`default_lambda`, ``pnp`` only) and, for
    ``pnp``, the kernel ``denoiser(k, level)`` (None: the shipped one for ``kernel_size``).

    ``recenter`` is how Fast EM re-centres each new kernel on its centre of mass (Diffusion EM never
    does, as in the authors' code): ``"spline"`` (the authors': ``scipy.ndimage.shift``'s cubic
    spline with constant boundary, to ``k//2 + 0.5·(1 − k mod 2)``, mass leaving the window lost;
    :mod:`fdem.spline_shift`), ``"bilinear"`` (fdem's: sub-pixel bilinear shift to ``(k//2, k//2)``,
    clipped and renormalised) or ``"none"``. ``missing`` is what the data step does with a problem's
    unobserved pixels: ``"impute"`` uses ``y`` as refilled by the loop (EM on them), ``"exclude"`` leaves
    them out (:mod:`fdem.masked_mstep`; docs/design.md §15).
    """

    kernel_size: int = 33
    reg: str = "pnp"
    lam: float | None = None
    beta: float = 1e5
    iters: int = 10
    recenter: str = "spline"
    missing: str = "impute"
    denoiser: Callable | None = None

    def __post_init__(self):
        if self.missing not in MISSING:
            raise InputError(f"unknown treatment of missing pixels {self.missing!r}: choose one of {', '.join(MISSING)}")
        if self.recenter not in RECENTER_RULES:
            raise InputError(f"unknown recenter rule {self.recenter!r}: choose one of {', '.join(RECENTER_RULES)}")
        if self.reg not in REGULARISERS:
            raise InputError(f"unknown regulariser {self.reg!r}: choose one of {', '.join(REGULARISERS)}")
        if isinstance(self.kernel_size, bool) or not isinstance(self.kernel_size, int) or self.kernel_size < 3:
            raise InputError(f"kernel_size must be an integer >= 3, got {self.kernel_size!r}")
        if self.lam is None and self.reg != "pnp":
            raise InputError(f"lam must be given for the {self.reg} regulariser")
        if (self.lam is not None and self.lam < 0) or self.beta <= 0:
            raise InputError(f"need lam >= 0 and beta > 0, got lam={self.lam}, beta={self.beta}")
        if not isinstance(self.iters, int) or self.iters < 0:
            raise InputError(f"iters must be an integer >= 0, got {self.iters!r}")

    @property
    def resolved_lam(self) -> float:
        """λ: ``lam``, or the default that goes with the denoiser."""
        return default_lambda(self.kernel_size, self.denoiser) if self.lam is None else self.lam

    @torch.no_grad()
    def update(
        self,
        problem: BlurProblem,
        x: Tensor,
        *,
        init: Tensor | None,
        weighting: str,
        r2: float | Tensor,
        recenter: bool,
        lam_scale: Tensor | None = None,
        relax: float = 1.0,
    ) -> Tensor:
        """HQS from ``init`` (None: a Dirac) on the particles ``x (B, n, C, H, W)``, re-centred by the
        config's rule if ``recenter``. ``relax`` = γ over-relaxes the update from its start ``k₀``:
        ``k ← R(Π(k₀ + γ·(R(HQS(k₀)) − k₀)))``, Π clipping at 0 and normalising, R re-centring (γ = 1:
        the paper's plain update; docs/design.md, "Over-relaxing the kernel"). ``lam_scale`` (``(B,)``,
        ``pnp`` only) multiplies λ per image (Fast EM's noise-level rule,
        :func:`fdem.sampling.fast_em.fast_em_lambda_scale`). Returns ``(B, 1, k, k)`` kernels."""
        y, lam = problem.y, self.resolved_lam
        if lam_scale is not None and self.reg != "pnp":
            raise InputError(f"a per-image λ scale needs the pnp regulariser, not {self.reg}")
        cells = 1 if init is None else init.shape[1]  # more than one: a kernel field, solved jointly
        data = data_term(problem, x, beta=self.beta, weighting=weighting, r2=r2, l2=lam if self.reg == "l2" else 0.0,
                         exclude=self.missing == "exclude", field=cells > 1)
        denoiser = self.denoiser
        if self.reg == "pnp" and denoiser is None and lam > 0:
            denoiser = _shipped_denoiser(self.kernel_size, str(y.device))
        start = dirac(y.shape[0], self.kernel_size, y.device, y.dtype) if init is None else init.to(y.dtype)
        kernel = start
        for _ in range(self.iters):
            z = normalize_kernel(data.solve(kernel))
            flat = z.reshape(-1, 1, *z.shape[-2:])  # the prior acts on each kernel of a field alone
            kernel = normalize_kernel(_prior_step(flat, reg=self.reg, lam=lam, beta=self.beta, denoiser=denoiser,
                                                  scale=lam_scale).reshape(z.shape))
        align = RECENTER_RULES[self.recenter if recenter else "none"]
        kernel = align(kernel)
        return kernel if relax == 1 else align(relaxed(start, kernel, relax))  # extrapolate centred kernels


def relaxed(start: Tensor, update: Tensor, gamma: float) -> Tensor:
    """``Π(start + γ·(update − start))``: the update moved ``gamma`` times as far from ``start``, clipped
    at 0 and normalised to sum 1."""
    return normalize_kernel(start + gamma * (update - start))


def data_term(
    problem: BlurProblem, x: Tensor, *, beta: float, weighting: str, r2: float | Tensor = 0.0, l2: float = 0.0,
    exclude: bool = False, field: bool = False,
) -> KernelDataTerm | MaskedKernelDataTerm:
    """The HQS data step of ``x (B, n, C, H, W)`` under ``weighting``: α (Eq. 24) and the extra
    Fourier-denominator term (Eq. 33's ``n·N·r²`` in paper weighting, plus ``2σ²·l2`` for ℓ2); with
    ``exclude`` and unobserved pixels, on the observed ones only (:mod:`fdem.masked_mstep`); for a ``field``
    problem's ``(B, M, k, k)`` kernels, all cells at once (the same module)."""
    particles = x.shape[1]
    sig2 = problem.sigma**2
    paper = weighting == "paper"
    alpha = sig2 * beta * (particles if paper else 1)  # Eq. 24: α = nβσ² (paper), σ²β (official)
    extra = 0.0
    if paper:  # Eq. 33: Σ_p E‖y − x ⊛ z‖², x ~ N(x_p, r²I), adds n·N·r²·‖z‖²
        r2 = torch.as_tensor(r2, dtype=problem.y.dtype, device=problem.y.device)
        extra = particles * problem.shape[0] * problem.shape[1] * r2
    if l2:
        extra = extra + 2 * sig2 * l2
    if field:
        return MaskedKernelDataTerm(problem, x, alpha=alpha, extra=extra, windows=problem.windows)
    if exclude and problem.observed is not None:
        return MaskedKernelDataTerm(problem, x, alpha=alpha, extra=extra)
    return KernelDataTerm(problem, x, alpha=alpha, extra=extra)


def _prior_step(z: Tensor, *, reg: str, lam: float, beta: float, denoiser, scale: Tensor | None = None) -> Tensor:
    """The proximal step of ``λR/β`` (PnP: the denoiser at level ``√(λ/β)``, λ times ``scale`` per image if given)."""
    if reg == "l1":
        return (z - lam / beta).clamp_min(0)
    if reg == "pnp" and lam > 0:
        return denoiser(z, (lam / beta) ** 0.5 if scale is None else (lam * scale / beta).sqrt())
    return z


def as_particles(x: Tensor, y: Tensor) -> Tensor:
    """``x`` as ``(B, n, C, H, W)`` particles matching ``y (B, C, H, W)`` (a ``(B, C, H, W)`` x is n = 1)."""
    if x.dim() == 4:
        x = x.unsqueeze(1)
    if x.dim() != 5 or x.shape[0] != y.shape[0] or x.shape[2:] != y.shape[1:]:
        raise InputError(f"x must be (B, n, C, H, W) or (B, C, H, W) matching y {tuple(y.shape)}, got {tuple(x.shape)}")
    return x


@torch.no_grad()
def estimate_kernel(
    y: Tensor,
    x: Tensor,
    sigma: float | Tensor,
    kernel_size: int,
    *,
    reg: str = "pnp",
    lam: float | None = None,
    beta: float = 1e5,
    iters: int = 10,
    init: Tensor | None = None,
    denoiser=None,
    weighting: str = "official",
    r2: float | Tensor = 0.0,
) -> Tensor:
    """Estimate ``(B, 1, k, k)`` kernels from blurry ``y (B,C,H,W)`` and sharp ``x (B,n,C,H,W)``.

    ``sigma`` is the noise level in ``[0, 1]`` units (float or one per image); ``lam`` defaults to
    :func:`default_lambda` for ``pnp`` (the shipped denoiser's λ, or the authors' λ when a
    ``denoiser`` is passed) and must be given for ``l1``/``l2``; ``init`` warm-starts
    (default: Dirac); ``denoiser`` defaults to the shipped one for the kernel size; ``r2`` is the
    particles' posterior variance used by ``weighting="paper"``.
    """
    config = MStepConfig(kernel_size=kernel_size, reg=reg, lam=lam, beta=beta, iters=iters, denoiser=denoiser)
    check_weighting(weighting)
    problem = BlurProblem(y, sigma)
    check_kernel_fits((kernel_size, kernel_size), problem.shape)
    return config.update(problem, as_particles(x, y), init=init, weighting=weighting, r2=r2, recenter=False)
