"""Deblur image files with a diffusion prior: the library side of ``fdem deblur``.

Any image size: the observation is reflect-padded (split between the two sides) to the UNet's
multiple ``2^(levels−1)`` and the result cropped back. The forward model stays the circular
convolution of DESIGN.md §1, on the padded canvas: an image that already is a multiple (e.g. a
256×256 benchmark observation made by circular blur) is processed exactly; for other sizes the
reflected margin takes the wrap-around, and a photograph blurred by a real (non-circular) camera
may show mild artefacts within a kernel radius of its border.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from fdem.errors import InputError
from fdem.sampling.guidance import R_RULES
from fdem.sampling.methods import MStepConfig, parse_method, run_method, total_steps
from fdem.sampling.result import TRACE_FORMATS, SamplingResult, save_trace

MAX_STEPS = 1000  # the T of the schedules the priors were trained with


def network_multiple(net: nn.Module) -> int:
    """Image sides the UNet accepts are multiples of this (1 for a network without an ADM config)."""
    cfg = getattr(net, "cfg", None)
    return 2 ** (len(cfg.channel_mult) - 1) if cfg is not None else 1


def _mirror_index(size: int, before: int, after: int) -> Tensor:
    """Indices of a symmetric (edge not repeated) extension of ``range(size)``, any width."""
    idx = torch.arange(-before, size + after)
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


def reflect_pad(x: Tensor, multiple: int) -> tuple[Tensor, tuple[int, int]]:
    """Reflect-pad ``(B, C, H, W)`` to multiples of ``multiple``; returns it and the (top, left) offset.

    A margin wider than the image keeps mirroring (mirror tiling), so tiny images work too.
    """
    offsets = []
    for dim in (-2, -1):
        size = x.shape[dim]
        total = (-size) % multiple
        first = total // 2
        x = x.index_select(dim, _mirror_index(size, first, total - first).to(x.device))
        offsets.append(first)
    return x, (offsets[0], offsets[1])


def deblur(net: nn.Module, y: Tensor, sigma: float | Tensor, method: str, **options) -> SamplingResult:
    """:func:`~fdem.sampling.methods.run_method` on ``y (B, C, H, W)`` of any size (pad, run, crop)."""
    h, w = y.shape[-2:]
    padded, (top, left) = reflect_pad(y, network_multiple(net))
    result = run_method(method, net, padded, sigma, **options)

    def crop(t: Tensor) -> Tensor:
        return t[..., top : top + h, left : left + w]

    trace = result.trace and replace(result.trace, x0=crop(result.trace.x0))
    return replace(result, image=crop(result.image), particles=crop(result.particles), trace=trace)


@dataclass
class Observation:
    """A blurry input file: ``image (3, H, W)`` in ``[0, 1]``; ``gray`` if its channels are equal."""

    path: Path
    image: Tensor
    gray: bool


def load_observations(paths: list[str], kernel_size: int) -> list[Observation]:
    """Read every input (RGB/RGBA/gray, 8/16-bit) and check that the kernel fits in each."""
    from fdem.imageio import load_image

    stems = [Path(p).stem for p in paths]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise InputError(f"several inputs are named {', '.join(duplicates)}: their outputs would overwrite each other")
    observations = []
    for p in paths:
        image = load_image(p, channels=3)
        if kernel_size > min(image.shape[-2:]):
            raise InputError(f"kernel of size {kernel_size}x{kernel_size} is larger than image {p} ({image.shape[-2]}x{image.shape[-1]})")
        gray = bool(torch.equal(image[0], image[1]) and torch.equal(image[1], image[2]))
        observations.append(Observation(Path(p), image, gray))
    return observations


def default_device() -> torch.device:
    """The machine's accelerator if it has one, else the CPU."""
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def save_outputs(obs: Observation, result: SamplingResult, out: Path, trace_format: str = "gif") -> list[Path]:
    """Write ``<stem>_restored.png``, for blind methods ``<stem>_kernel.png`` (scaled to its maximum,
    enlarged) and ``<stem>_kernel.npy`` (float32 k×k, sum 1), and ``<stem>_trace.<gif|png>``."""
    from fdem.imageio import save_image
    from fdem.io_utils import atomic_path
    from kernels_gen import save_preview

    image = result.image[0].detach().float().cpu()
    if obs.gray and image.shape[0] == 3:
        image = image.mean(dim=0, keepdim=True)
    written = [out / f"{obs.path.stem}_restored.png"]
    save_image(written[0], image)
    if result.kernel is not None:
        kernel = result.kernel[0, 0].detach().float().cpu()
        written += [out / f"{obs.path.stem}_kernel.png", out / f"{obs.path.stem}_kernel.npy"]
        save_preview(kernel, written[1], ncol=1)
        with atomic_path(written[2]) as tmp:
            np.save(tmp, kernel.numpy())
    if result.trace is not None:
        written.append(save_trace(result.trace, out / f"{obs.path.stem}_trace.{trace_format}"))
    return written


def _check_options(
    method: str, sigma: float, particles: int, steps: int | None, kernel_size: int, mode: str, em_iters: int, trace_every: int, trace_format: str
) -> None:
    parse_method(method)
    if mode not in R_RULES:
        raise InputError(f"unknown mode {mode!r}: choose one of {', '.join(R_RULES)}")
    if not sigma >= 0:
        raise InputError(f"sigma must be >= 0, got {sigma}")
    if particles < 1 or em_iters < 1 or trace_every < 0:
        raise InputError("particles and EM iterations must be >= 1, the trace interval >= 0")
    if steps is not None and not 2 <= steps <= MAX_STEPS:
        raise InputError(f"the number of steps must be in [2, {MAX_STEPS}], got {steps}")
    if kernel_size < 3:
        raise InputError(f"kernel size must be >= 3, got {kernel_size}")
    if trace_format not in TRACE_FORMATS:
        raise InputError(f"trace format must be one of {', '.join(TRACE_FORMATS)}, got {trace_format!r}")


def deblur_files(
    images: list[str],
    out: str | Path,
    *,
    prior: str | Path,
    method: str,
    sigma: float,
    prior_config: str | None = None,
    prior_prefix: str | None = None,
    kernel_size: int = 33,
    particles: int = 1,
    steps: int | None = None,
    seed: int = 0,
    device: str | None = None,
    true_kernel: str | Path | None = None,
    mode: str = "official",
    lam: float | None = None,
    em_iters: int = 10,
    kernel_denoiser: str | Path | None = None,
    trace_every: int = 0,
    trace_format: str = "gif",
    progress: bool = True,
) -> list[Path]:
    """Deblur files, image ``j`` with seed ``seed + j``; ``sigma`` in ``[0, 1]`` units.

    Non-blind methods (``dps``, ``pigdm``) need ``true_kernel`` (a ``.npy`` or any kernel bank; image
    ``j`` takes kernel ``j`` cyclically). For the blind methods a true kernel is optional and only
    used to print the kernel MSE of the estimate. Everything is checked before the prior is
    loaded, and every input is read before anything is written. Returns the files written.
    """
    from tqdm import tqdm

    from fdem.imageio import convert_channels
    from fdem.io_utils import ensure_writable_dir
    from fdem.kernel_ops import kernel_mse
    from fdem.priors import load_prior
    from kernels_gen import load_bank

    _check_options(method, sigma, particles, steps, kernel_size, mode, em_iters, trace_every, trace_format)
    _, em = parse_method(method)
    truths = load_bank(true_kernel) if true_kernel is not None else None
    if em is None and truths is None:
        raise InputError(f"method {method} is non-blind: give the true kernel (--true-kernel FILE)")
    observations = load_observations(images, kernel_size if em else truths.shape[-1])
    out = ensure_writable_dir(out)
    try:
        device = torch.device(device) if device else default_device()
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:  # unknown name, or a device this machine lacks
        raise InputError(f"device {str(device)!r} is not available: {str(err).splitlines()[0]}") from err
    net = load_prior(prior, prior_config, prior_prefix, device)
    mstep = MStepConfig(kernel_size=kernel_size, lam=lam, denoiser=_kernel_denoiser(em, kernel_size, lam, kernel_denoiser, device))
    channels = net.cfg.in_channels
    written = []
    for j, obs in enumerate(observations):
        y = convert_channels(obs.image, channels)[None].to(device)
        truth = None if truths is None else truths[j % len(truths)][None]
        with tqdm(total=total_steps(method, steps, em_iters), desc=obs.path.name, unit="step", disable=not progress) as bar:
            result = deblur(
                net, y, sigma, method,
                kernel=None if em else truth, mstep=mstep, particles=particles, steps=steps, seed=seed + j,
                mode=mode, em_iters=em_iters, trace_every=trace_every, callback=lambda u, k: bar.update(),
            )
        if channels == 1:
            obs = replace(obs, gray=True)
        written += save_outputs(obs, result, out, trace_format)
        note = f", kernel MSE {kernel_mse(result.kernel.cpu(), truth).item():.3g}" if em and truth is not None else ""
        print(f"{obs.path.name}: {method} in {result.seconds:.1f} s{note}")
    return written


def _kernel_denoiser(em: str | None, kernel_size: int, lam: float | None, path: str | Path | None, device: torch.device):
    """The M-step's PnP denoiser (loaded once): ``path`` or the shipped one; None when unused."""
    from fdem.nets.kernel_denoiser import load_kernel_denoiser

    if em is None or lam == 0:
        return None
    return load_kernel_denoiser(33 if kernel_size <= 48 else 64, path=path, device=device)
