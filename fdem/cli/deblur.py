"""``fdem deblur``: deblur image files with any method (the file front end of :mod:`fdem.restorers`).

Any image size (the diffusion methods pad it: :mod:`fdem.padding`); every input is read and every
option checked before a network is loaded or anything is written.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fdem.cli.args import sigma255
from fdem.errors import InputError
from fdem.method_table import lookup, method_names

if TYPE_CHECKING:
    from torch import Tensor

OPTIONS = ("prior", "prior_config", "prior_prefix", "kernel_size", "particles", "steps", "mode", "lam",
           "em_iters", "kernel_denoiser", "iters", "weights", "kernel_prior")


@dataclass
class Observation:
    """A blurry input file: ``image (3, H, W)`` in ``[0, 1]``; ``gray`` if its channels are equal."""

    path: Path
    image: Tensor
    gray: bool


def load_observations(paths: list[str], kernel_size: int) -> list[Observation]:
    """Read every input (RGB/RGBA/gray, 8/16-bit) and check that the kernel fits in each."""
    import torch

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


def save_outputs(obs: Observation, result, out: Path, trace_format: str = "gif") -> list[Path]:
    """Write ``<stem>_restored.png``, for methods that estimate a kernel ``<stem>_kernel.png``
    (scaled to its maximum, enlarged) and ``<stem>_kernel.npy`` (float32 k×k, sum 1), and
    ``<stem>_trace.<gif|png>`` when the :class:`~fdem.restoration.Restoration` carries a trace."""
    import numpy as np

    from fdem.imageio import save_image
    from fdem.io_utils import atomic_path
    from fdem.kernels_gen import save_preview
    from fdem.sampling.result import save_trace

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


def deblur_files(images: list[str], out: str | Path, *, method: str, sigma: float, seed: int = 0,
                 device: str | None = None, true_kernel: str | Path | None = None, trace_format: str = "gif",
                 progress: bool = True, **options) -> list[Path]:
    """Deblur files with any method of :mod:`fdem.restorers`, image ``j`` with seed ``seed + j``;
    ``sigma`` in ``[0, 1]`` units (checked by the caller); ``options`` go to the method (e.g.
    ``prior``, ``kernel_size``, ``particles``, ``steps``; ``prior=None``: the shipped prior).

    Non-blind methods (``dps``, ``pigdm``) need ``true_kernel`` (a ``.npy`` or any kernel bank; image
    ``j`` takes kernel ``j`` cyclically); for the blind ones it only adds the kernel MSE to the
    printed line. Returns the files written.
    """
    from tqdm import tqdm

    from fdem.devices import resolve_device
    from fdem.imageio import convert_channels
    from fdem.io_utils import ensure_writable_dir
    from fdem.kernel_ops import kernel_mse
    from fdem.kernels_gen import load_bank
    from fdem.restorers import build_restorer
    from fdem.sampling.result import TRACE_FORMATS

    blind = lookup(method).blind
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


def cmd_deblur(args: argparse.Namespace) -> None:
    """Deblur your images with any method (default: Fast EM ΠGDM on the shipped prior)."""
    options = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    if args.trace:
        options["trace_every"] = args.trace_every or 10
    elif args.trace_every is not None:
        raise InputError("--trace-every needs --trace")
    deblur_files(
        args.images, args.out, method=args.method, sigma=sigma255(args.sigma), seed=args.seed, device=args.device,
        true_kernel=args.true_kernel, trace_format=args.trace_format, **options,
    )


def add_parsers(sub) -> None:
    """Add ``deblur`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("deblur", help="deblur your images with any method (default: Fast EM PiGDM, shipped prior)")
    p.add_argument("images", nargs="+", help="blurry images (PNG/JPEG/TIFF..., RGB, RGBA or gray, 8 or 16 bit)")
    p.add_argument("--sigma", type=float, required=True, help="noise level of the images, 255 scale")
    p.add_argument("--method", default="fastem-pigdm", help=f"one of {', '.join(method_names())} (default: fastem-pigdm)")
    p.add_argument("--prior", help="score UNet: guided-diffusion .pt (e.g. ffhq_10m.pt), a `fdem fit` checkpoint "
                   "or a shipped prior's name (default: small64, the shipped natural-image prior)")
    p.add_argument("--prior-config", help="UNet architecture: ffhq256 (default for a user file), small64, kernel64 or a YAML of ADMConfig fields")
    p.add_argument("--prior-prefix", help="prefix of the UNet keys in the checkpoint (default: detected)")
    p.add_argument("--kernel-prior", help="blind-dps: kernel score UNet, a file or a shipped name (default: kernel-small64)")
    p.add_argument("--weights", help="mprnet: network weights (default: the shipped mprnet-small)")
    p.add_argument("--kernel-size", type=int, help="size of the estimated kernel (blind methods; default 33)")
    p.add_argument("--particles", type=int, help="posterior samples per image; the output is their mean (default 1)")
    p.add_argument("--steps", type=int, help="diffusion steps (default: 100 for PiGDM methods, 1000 for DPS ones)")
    p.add_argument("--iters", type=int, help="selfdeblur: optimisation iterations (default 5000)")
    p.add_argument("--seed", type=int, default=0, help="image j uses seed + j")
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: the accelerator if there is one)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--true-kernel", help="kernel .npy or bank: required by dps/pigdm; blind methods only report the kernel MSE")
    p.add_argument("--mode", help="official (the authors' code, default) or paper (the paper's equations)")
    p.add_argument("--lam", type=float, help="M-step PnP weight (default: tuned for the shipped kernel denoiser)")
    p.add_argument("--em-iters", type=int, help="outer iterations of Diffusion EM (default 10)")
    p.add_argument("--kernel-denoiser", help="kernel denoiser state_dict (default: the shipped one)")
    p.add_argument("--trace", action="store_true", help="also save the progress (x0 estimate and kernel)")
    p.add_argument("--trace-every", type=int, help="steps between trace frames (default 10; needs --trace)")
    p.add_argument("--trace-format", default="gif", help="gif (animation) or png (grid of frames)")
    p.set_defaults(func=cmd_deblur)
