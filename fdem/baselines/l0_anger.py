"""``l0-anger``: blind deblurring with the ℓ0 gradient prior (Anger, Facciolo, Delbracio, IPOL 2019).

Re-implemented from the article's description (Pan et al.'s ℓ0 model as analysed by Anger et al.):

* kernel estimation on the grey image (channel mean, stretched to ``[0, 1]`` as the article's
  pre-processing does), coarse to fine: image and kernel scaled by ``scale`` while the kernel stays
  ≥ 3 px; at each scale ``iters`` alternations of
  (a) ``min_x ||k ⊛ x − y||² + λ||∇x||₀`` by half-quadratic splitting (β from 2λ, doubled while
  below ``beta_max``; the auxiliary gradients are hard-thresholded where ``|g|² < λ/β``), and
  (b) ``min_k ||∇x ⊛ k − ∇y||² + γ||k||²`` in closed form, then cleaned (clipped at 0, zeroed below
  ``threshold``·max, 8-connected components holding less than ``min_component_mass`` of the mass
  removed, shifted by the rounded centre of mass, normalised);
  λ ← max(λ / ``lam_decay``, ``lam_min``) after every alternation, carried from scale to scale;
* the final kernel is re-centred by its sub-pixel centre of mass (the project's convention), then
  the colour image is deconvolved with total variation (ADMM, i.e. split Bregman, FFT solves).

Boundaries are circular everywhere (the benchmark blur is a true circular convolution), so every
linear solve is one division in the Fourier domain; no edge tapering is needed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from torch import Tensor

from fdem.errors import InputError
from fdem.kernel_ops import center_of_mass, check_kernel_size, dirac, normalize_kernel, recenter
from fdem.physics import as_batch_sigma, check_kernel_fits, otf2psf, psf2otf
from fdem.restorer_base import ConfigRestorer, Restoration
from fdem.validate import check_sigma

_EIGHT_CONNECTED = np.ones((3, 3), dtype=int)


@dataclass(frozen=True)
class Protocol:
    """What differs between the article's settings and the tuned default: the kernel-cleaning
    threshold (a fraction of the kernel's maximum) and the final TV weight ``floor + 2σ²``."""

    threshold: float
    tv_floor: float


PROTOCOLS = {
    "paper": Protocol(threshold=0.05, tv_floor=1e-3),  # the IPOL article (the paper's Table 1 number)
    "tuned": Protocol(threshold=0.3, tv_floor=3e-3),  # tuned on BSDS500 val (studies/l0/l0_check.py)
}


@dataclass(frozen=True)
class L0Params:
    """The method's parameters: the IPOL article's defaults, except the kernel-cleaning ``threshold``
    and the final TV weight, which come from ``protocol`` (``"tuned"``, the default, or
    ``"paper"``) unless given."""

    protocol: str = "tuned"
    lam: float = 4e-3
    lam_min: float = 1e-4
    lam_decay: float = 1.1
    beta_max: float = 1e5
    gamma: float = 20.0
    iters: int = 5
    scale: float = 0.5
    threshold: float | None = None
    min_component_mass: float = 0.1
    tv_weight: float | None = None
    tv_iters: int = 60
    tv_rho: float | None = None

    def check(self) -> None:
        """Raise :class:`InputError` naming the first out-of-range parameter."""
        rules = {
            "protocol": self.protocol in PROTOCOLS,
            "lam": self.lam > 0, "lam_min": self.lam_min > 0, "lam_decay": self.lam_decay >= 1,
            "beta_max": self.beta_max > 0, "gamma": self.gamma > 0, "iters": int(self.iters) >= 1,
            "scale": 0 < self.scale < 1, "threshold": self.threshold is None or 0 <= self.threshold < 1,
            "min_component_mass": 0 <= self.min_component_mass <= 1,
            "tv_weight": self.tv_weight is None or self.tv_weight > 0,
            "tv_iters": int(self.tv_iters) >= 1, "tv_rho": self.tv_rho is None or self.tv_rho > 0,
        }
        for name, ok in rules.items():
            if not ok:
                valid = f" (valid: {', '.join(PROTOCOLS)})" if name == "protocol" else ""
                raise InputError(f"bad l0-anger parameter {name}={getattr(self, name)!r}{valid}")

    @property
    def cleaning_threshold(self) -> float:
        return PROTOCOLS[self.protocol].threshold if self.threshold is None else self.threshold

    def final_weight(self, sigma: Tensor) -> Tensor | float:
        """The final TV weight: ``tv_weight`` if given, else the protocol's ``floor + 2σ²``."""
        return self.tv_weight or PROTOCOLS[self.protocol].tv_floor + 2 * sigma**2


DEFAULTS = asdict(L0Params())


def make_params(**params) -> L0Params:
    """:class:`L0Params` from keywords, checked (unknown names are an :class:`InputError`)."""
    unknown = sorted(set(params) - {f.name for f in fields(L0Params)})
    if unknown:
        raise InputError(f"unknown l0-anger parameter(s) {unknown}; valid: {', '.join(DEFAULTS)}")
    p = L0Params(**params)
    p.check()
    return p


# --- linear operators on the rFFT grid ----------------------------------------------------------


def _difference_otfs(shape: tuple[int, int], like: Tensor) -> tuple[Tensor, Tensor]:
    """rFFT transfer functions of the circular forward differences ``x[i, j+1] − x[i, j]`` and ``x[i+1, j] − x[i, j]``."""
    h, w = shape
    fy = torch.fft.fftfreq(h, device=like.device, dtype=like.dtype).view(-1, 1)
    fx = torch.fft.rfftfreq(w, device=like.device, dtype=like.dtype).view(1, -1)
    dh = torch.polar(torch.ones_like(fx), 2 * math.pi * fx) - 1
    dv = torch.polar(torch.ones_like(fy), 2 * math.pi * fy) - 1
    return dh.expand(h, -1), dv.expand(-1, fx.shape[-1])


def _ifft(spectrum: Tensor, shape) -> Tensor:
    return torch.fft.irfft2(spectrum, s=tuple(shape))


@dataclass
class _Scale:
    """The FFTs of one scale's observation, computed once and shared by its alternations."""

    y: Tensor
    fy: Tensor
    dh: Tensor
    dv: Tensor
    gradient_power: Tensor

    @classmethod
    def of(cls, y: Tensor) -> _Scale:
        dh, dv = _difference_otfs(y.shape[-2:], y)
        return cls(y, torch.fft.rfft2(y), dh, dv, dh.abs() ** 2 + dv.abs() ** 2)

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.y.shape[-2:])


def l0_image_step(y: Tensor | _Scale, kernel: Tensor, lam: float, beta_max: float) -> Tensor:
    """ℓ0-gradient deconvolution by HQS: ``argmin_x ||k ⊛ x − y||² + λ||∇x||₀`` (circular), from ``x = y``."""
    s = y if isinstance(y, _Scale) else _Scale.of(y)
    otf = psf2otf(kernel, s.shape)
    numerator_data = otf.conj() * s.fy
    denominator_base = otf.abs() ** 2
    spectrum, beta = s.fy, 2 * lam
    while beta < beta_max:
        gh, gv = _ifft(s.dh * spectrum, s.shape), _ifft(s.dv * spectrum, s.shape)
        keep = (gh**2 + gv**2) >= lam / beta
        divergence = s.dh.conj() * torch.fft.rfft2(gh * keep) + s.dv.conj() * torch.fft.rfft2(gv * keep)
        spectrum = (numerator_data + beta * divergence) / (denominator_base + beta * s.gradient_power)
        beta *= 2
    return _ifft(spectrum, s.shape)


def kernel_step(x: Tensor, y: Tensor | _Scale, kernel_size: int, gamma: float) -> Tensor:
    """Gradient-domain ℓ2 least squares ``argmin_k Σ_d ||∂_d x ⊛ k − ∂_d y||² + γ||k||²``, cropped to k×k."""
    s = y if isinstance(y, _Scale) else _Scale.of(y)
    fx = torch.fft.rfft2(x)
    numerator = s.gradient_power * fx.conj() * s.fy
    denominator = s.gradient_power * fx.abs() ** 2 + gamma
    return otf2psf(numerator / denominator, s.shape, kernel_size)


# --- kernel cleaning ------------------------------------------------------------------------------


def _significant_components(kernel: np.ndarray, min_mass: float) -> np.ndarray:
    """Mask of the 8-connected components of ``kernel > 0`` that carry ≥ ``min_mass`` of the total mass."""
    labels, count = ndimage.label(kernel > 0, structure=_EIGHT_CONNECTED)
    if count == 0:
        return np.ones_like(kernel, dtype=bool)
    masses = ndimage.sum_labels(kernel, labels, index=np.arange(1, count + 1))
    keep = masses >= min_mass * masses.sum()
    keep[np.argmax(masses)] = True
    return keep[labels - 1] & (labels > 0)


def center_integer(kernel: Tensor) -> Tensor:
    """Shift each kernel by whole pixels (zero fill) so that its rounded centre of mass is ``(k//2, k//2)``.

    A whole-pixel shift keeps thin kernels sharp, which a sub-pixel (interpolating) shift would not.
    """
    size = kernel.shape[-1]
    offsets = (center_of_mass(kernel).round() - size // 2).long().tolist()
    padded = F.pad(kernel, (size, size, size, size))
    rows = [padded[b, :, size + dr : 2 * size + dr, size + dc : 2 * size + dc] for b, (dr, dc) in enumerate(offsets)]
    return torch.stack(rows)


def clean_kernel(kernel: Tensor, threshold: float, min_component_mass: float) -> Tensor:
    """Clip, zero values below ``threshold``·max, drop isolated small components, centre, normalise.

    Component rule: a component (8-connectivity) survives when it holds at least
    ``min_component_mass`` of the thresholded kernel's mass (the heaviest one always survives).
    The labelling runs on the CPU with ``scipy.ndimage.label`` (the kernel is tiny). A kernel with
    no positive value becomes a Dirac.
    """
    kernel = kernel.clamp_min(0)
    peak = kernel.amax(dim=(-2, -1), keepdim=True)
    kernel = torch.where(kernel >= threshold * peak, kernel, torch.zeros_like(kernel))
    flat = kernel.detach().cpu().double().numpy()
    masks = np.stack([_significant_components(k[0], min_component_mass) for k in flat])[:, None]
    kernel = kernel * torch.from_numpy(masks).to(kernel.device)
    empty = kernel.sum(dim=(-2, -1), keepdim=True) <= 0
    kernel = torch.where(empty, dirac(kernel.shape[0], kernel.shape[-1], kernel.device, kernel.dtype), kernel)
    return normalize_kernel(center_integer(kernel))


# --- coarse to fine -------------------------------------------------------------------------------


def level_sizes(kernel_size: int, scale: float) -> list[int]:
    """Kernel size per scale, finest first: ``kernel_size``, then odd sizes ≈ ``kernel_size·scale^s`` ≥ 3."""
    sizes = [kernel_size]
    while True:
        size = round(kernel_size * scale ** len(sizes))
        size += 1 - size % 2
        if size < 3 or size >= sizes[-1]:
            return sizes
        sizes.append(size)


def _resize_image(image: Tensor, factor: float) -> Tensor:
    if factor == 1:
        return image
    size = [max(1, round(n * factor)) for n in image.shape[-2:]]
    return F.interpolate(image, size=size, mode="bilinear", align_corners=False, antialias=True)


def _resize_kernel(kernel: Tensor, size: int) -> Tensor:
    """Bilinear resampling of a kernel to ``size`` (centres aligned), re-normalised and re-centred."""
    resized = F.interpolate(kernel, size=(size, size), mode="bilinear", align_corners=True)
    return normalize_kernel(center_integer(normalize_kernel(resized)))


def _stretch(grey: Tensor) -> Tensor:
    """Affine map of each image onto ``[0, 1]`` (the article's pre-processing; fixes λ's scale)."""
    low = grey.amin(dim=(-2, -1), keepdim=True)
    high = grey.amax(dim=(-2, -1), keepdim=True)
    return (grey - low) / (high - low).clamp_min(1e-6)


def estimate_kernel_l0(grey: Tensor, kernel_size: int, p: L0Params | dict,
                       callback: Callable[[], None] | None = None) -> Tensor:
    """Coarse-to-fine kernel estimation on a grey batch ``(B, 1, H, W)``; ``callback()`` after each alternation."""
    p = p if isinstance(p, L0Params) else make_params(**p)
    sizes = level_sizes(kernel_size, p.scale)
    grey = _stretch(grey)
    kernel = dirac(grey.shape[0], sizes[-1], grey.device, grey.dtype)
    lam = p.lam
    for level in reversed(range(len(sizes))):
        size = sizes[level]
        kernel = _resize_kernel(kernel, size) if kernel.shape[-1] != size else kernel
        scale = _Scale.of(_resize_image(grey, p.scale**level))
        for _ in range(int(p.iters)):
            x = l0_image_step(scale, kernel, lam, p.beta_max)
            kernel = clean_kernel(kernel_step(x, scale, size, p.gamma), p.cleaning_threshold, p.min_component_mass)
            lam = max(lam / p.lam_decay, p.lam_min)
            if callback is not None:
                callback()
    return recenter(kernel)


# --- final non-blind step -------------------------------------------------------------------------


def _shrink(gh: Tensor, gv: Tensor, tau: float | Tensor) -> tuple[Tensor, Tensor]:
    """Isotropic soft-thresholding of the gradient field (per channel)."""
    norm = torch.sqrt(gh**2 + gv**2).clamp_min(1e-12)
    factor = (1 - tau / norm).clamp_min(0)
    return gh * factor, gv * factor


def tv_deconv(y: Tensor, kernel: Tensor, weight: float | Tensor, iters: int, rho: float | Tensor) -> Tensor:
    """ADMM for ``argmin_x ½||k ⊛ x − y||² + weight·TV(x)`` (isotropic TV, circular, scaled duals).

    ``weight`` and ``rho`` are floats or one value per image ``(B, 1, 1, 1)``.
    """
    shape = y.shape[-2:]
    otf = psf2otf(kernel, shape)
    dh, dv = _difference_otfs(shape, y)
    numerator_data = otf.conj() * torch.fft.rfft2(y)
    denominator = otf.abs() ** 2 + rho * (dh.abs() ** 2 + dv.abs() ** 2)
    zh = zv = uh = uv = torch.zeros_like(y)
    for _ in range(iters):
        divergence = dh.conj() * torch.fft.rfft2(zh - uh) + dv.conj() * torch.fft.rfft2(zv - uv)
        spectrum = (numerator_data + rho * divergence) / denominator
        gh, gv = _ifft(dh * spectrum, shape), _ifft(dv * spectrum, shape)
        zh, zv = _shrink(gh + uh, gv + uv, weight / rho)
        uh, uv = uh + gh - zh, uv + gv - zv
    return _ifft(spectrum, shape)


# --- entry points ---------------------------------------------------------------------------------


def _check_input(y: Tensor, kernel_size: int, sigma) -> None:
    if y.ndim != 4 or y.shape[1] not in (1, 3):
        raise InputError(f"expected images (B, 1 or 3, H, W), got shape {tuple(y.shape)}")
    check_kernel_size(kernel_size, "l0-anger")
    check_kernel_fits((kernel_size, kernel_size), tuple(y.shape[-2:]))
    if sigma is not None:
        check_sigma(sigma)


@torch.no_grad()
def l0_anger(y: Tensor, kernel_size: int, sigma: float | Tensor | None = None,
             callback: Callable[[], None] | None = None, **params) -> tuple[Tensor, Tensor, float]:
    """Blind deblurring of ``y (B,C,H,W)``: ``(image in [0,1], kernel (B,1,k,k), seconds)``.

    ``sigma`` (a float or one value per image) only sets the default TV weight of the final
    deconvolution, ``floor + 2σ²`` (:class:`Protocol`; ADMM penalty ``10×`` the weight); the kernel
    estimation does not use it, as in the article. ``params``: the fields of :class:`L0Params`.
    """
    p = make_params(**params)
    _check_input(y, kernel_size, sigma)
    start = time.perf_counter()
    grey = y.mean(dim=1, keepdim=True)
    kernel = estimate_kernel_l0(grey, kernel_size, p, callback)
    weight = p.final_weight(as_batch_sigma(sigma if sigma is not None else 0.0, y.shape[0], y))
    rho = p.tv_rho or 10 * weight
    image = tv_deconv(y, kernel, weight, int(p.tv_iters), rho).clamp(0, 1)
    return image, kernel, time.perf_counter() - start


class L0AngerRestorer(ConfigRestorer):
    """``l0-anger`` behind the :class:`fdem.restorer_base.Restorer` interface; options: ``kernel_size``
    and the fields of :class:`L0Params` (deterministic: seeds are ignored)."""

    seeded = False
    config_class = L0Params

    def total_steps(self, size: tuple[int, int] | None = None) -> int:
        return int(self.cfg.iters) * len(level_sizes(self.kernel_size, self.cfg.scale))

    def _restore(self, y: Tensor, sigma: float | Tensor, kernel: Tensor | None, seed: int | Sequence[int],
                 callback: Callable[..., None] | None) -> Restoration:
        image, estimate, _ = l0_anger(y, self.kernel_size, sigma, callback, **asdict(self.cfg))
        return Restoration(image, estimate)
