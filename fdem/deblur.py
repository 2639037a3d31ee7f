"""Deblur image files with any method: the library side of ``fdem deblur``.

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
from fdem.restorers import Restoration
from fdem.sampling.methods import run_method
from fdem.sampling.result import TRACE_FORMATS, SamplingResult, save_trace


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


def save_outputs(obs: Observation, result: Restoration, out: Path, trace_format: str = "gif") -> list[Path]:
    """Write ``<stem>_restored.png``, for methods that estimate a kernel ``<stem>_kernel.png``
    (scaled to its maximum, enlarged) and ``<stem>_kernel.npy`` (float32 k×k, sum 1), and
    ``<stem>_trace.<gif|png>`` when the result carries a trace."""
    from fdem.imageio import save_image
    from fdem.io_utils import atomic_path
    from fdem.kernels_gen import save_preview

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
    trace = result.extras.get("trace")
    if trace is not None:
        written.append(save_trace(trace, out / f"{obs.path.stem}_trace.{trace_format}"))
    return written


def resolve_device(device: str | None) -> torch.device:
    """``device`` (default: the accelerator if any), checked to exist on this machine."""
    try:
        device = torch.device(device) if device else default_device()
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:  # unknown name, or a device this machine lacks
        raise InputError(f"device {str(device)!r} is not available: {str(err).splitlines()[0]}") from err
    return device


def deblur_files(
    images: list[str],
    out: str | Path,
    *,
    method: str,
    sigma: float,
    seed: int = 0,
    device: str | None = None,
    true_kernel: str | Path | None = None,
    trace_format: str = "gif",
    progress: bool = True,
    **options,
) -> list[Path]:
    """Deblur files with any method of :mod:`fdem.restorers`, image ``j`` with seed ``seed + j``;
    ``sigma`` in ``[0, 1]`` units; ``options`` go to the method (e.g. ``prior``, ``kernel_size``,
    ``particles``, ``steps``; ``prior=None`` is the shipped natural-image prior).

    Non-blind methods (``dps``, ``pigdm``) need ``true_kernel`` (a ``.npy`` or any kernel bank; image
    ``j`` takes kernel ``j`` cyclically). For the blind methods a true kernel is optional and only
    used to print the kernel MSE of the estimate. Every input is read and every option checked
    before a network is loaded or anything is written. Returns the files written.
    """
    from tqdm import tqdm

    from fdem.imageio import convert_channels
    from fdem.io_utils import ensure_writable_dir
    from fdem.kernel_ops import kernel_mse
    from fdem.restorers import build_restorer, restorer_class
    from fdem.kernels_gen import load_bank

    blind = restorer_class(method).is_blind(method)
    if not sigma >= 0:
        raise InputError(f"sigma must be >= 0, got {sigma}")
    if trace_format not in TRACE_FORMATS:
        raise InputError(f"trace format must be one of {', '.join(TRACE_FORMATS)}, got {trace_format!r}")
    truths = load_bank(true_kernel) if true_kernel is not None else None
    if not blind and truths is None:
        raise InputError(f"method {method} is non-blind: give the true kernel (--true-kernel FILE)")
    observations = load_observations(images, options.get("kernel_size", 33) if blind else truths.shape[-1])
    out = ensure_writable_dir(out)
    restorer = build_restorer(method, resolve_device(device), **options)
    written = []
    for j, obs in enumerate(observations):
        y = convert_channels(obs.image, restorer.channels or 3)[None]
        truth = None if truths is None else truths[j % len(truths)][None]
        with tqdm(total=restorer.total_steps(), desc=obs.path.name, unit="step", disable=not progress) as bar:
            result = restorer.restore(y, sigma, kernel=truth, seed=seed + j, callback=bar.update)
        if y.shape[1] == 1:
            obs = replace(obs, gray=True)
        written += save_outputs(obs, result, out, trace_format)
        note = ""
        if result.kernel is not None and truth is not None:
            note = f", kernel MSE {kernel_mse(result.kernel.cpu(), truth).item():.3g}"
        print(f"{obs.path.name}: {method} in {result.seconds:.1f} s{note}")
    return written
