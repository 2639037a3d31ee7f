"""``fdem deblur``: deblur image files with any method (the file front end of :mod:`fdem.restorers`).

Inputs are files, folders (their images, sorted) or glob patterns; ``.npy`` observations (what
``fdem blur`` writes) are accepted by name or pattern. Every flag is checked, every input's header
read and the plan's memory estimated (:mod:`fdem.memory`) before the output folder is made; an
unreadable input is skipped and listed (one warning line each, ``skipped.csv``), the others are done.
An image comes back at its own bit depth (16-bit in, 16-bit out; ``.npy`` gives 16-bit) with its alpha.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from fdem.cli.deblur_inputs import Observation, expand_inputs, fitted_size, load_observation, probe_inputs, skip
from fdem.cli.deblur_outputs import save_outputs, save_verdict
from fdem.errors import InputError
from fdem.method_table import lookup

if TYPE_CHECKING:
    from torch import Tensor

AUTO_GRID = "auto"  # --kernel-grid auto: one kernel, then the field preset where the verdict finds the blur varying
# Command-line flags that become method options (``--step-rule`` → ``step_rule``), parsed once into the
# method's objects: a diffusion method's preset fields (:mod:`fdem.presets`), any method's own options.
OPTIONS = ("prior", "prior_config", "prior_prefix", "kernel_size", "particles", "restarts", "combine", "steps", "lam", "lam_rule",
           "em_iters", "kernel_denoiser", "iters", "weights", "kernel_prior", "step_rule", "eta", "start", "r2_rule",
           "weighting", "recenter", "border", "tile", "overlap", "max_batch", "kernel_init", "kernel_relax",
           "kernel_uncertainty", "passes", "refine", "saturation", "saturation_reach", "missing", "kernel_window", "linear_light", "sigma_floor",
           "kernel_grid", "field_shrink", "field_gate", "field_solve")


@dataclass(frozen=True)
class Job:
    """What every image of one ``deblur_files`` call shares; ``sigma`` None: estimated per image
    (:func:`fdem.noise_level.estimate_noise`); ``max_side``: larger images are downscaled to it first;
    ``field``: under ``--kernel-grid auto``, the kernel-field restorer that redoes an image whose verdict
    finds the blur varying (:attr:`fdem.verdict.Verdict.blur_varies`)."""

    method: str
    sigma: float | None
    seed: int
    truths: Tensor | None
    trace_format: str
    progress: bool
    max_side: int | None = None
    field: object | None = None


def restore_one(restorer, obs: Observation, job: Job, j: int):
    """Restore observation ``j`` (seed ``seed + j``, kernel ``j`` of the truths cyclically): ``(result,
    truth, sigma)``; running out of memory is an :class:`InputError` saying what to change."""
    import torch
    from tqdm import tqdm

    from fdem.imageio import convert_channels

    y = convert_channels(obs.image, restorer.channels or 3)[None]
    sigma = noise_level(obs, job)
    check_observed(restorer, obs)
    if job.progress and hasattr(restorer, "network_for"):
        from fdem.sampling.step_plan import plan_restoration

        print(plan_restoration(restorer, *y.shape[-2:]).line(obs.path.name), flush=True)
    truth = None if job.truths is None else job.truths[j % len(job.truths)][None]
    try:
        with tqdm(total=restorer.total_steps(tuple(y.shape[-2:])), desc=obs.path.name, unit="step", disable=not job.progress) as bar:
            return restorer.restore(y, sigma, kernel=truth, seed=job.seed + j, callback=bar.update), truth, sigma
    except (torch.OutOfMemoryError, MemoryError) as err:
        h, w = y.shape[-2:]
        raise InputError(f"out of memory restoring {obs.path} ({h}x{w}) with {job.method}: use a smaller image, "
                         "fewer --particles or a classical method (l0-anger, alternation)") from err


def noise_level(obs: Observation, job: Job) -> float:
    """The σ to restore ``obs`` with (``[0, 1]`` units): the one given, or estimated from the image (printed)."""
    from fdem.noise_level import estimate_noise

    if job.sigma is not None:
        return job.sigma
    sigma = float(estimate_noise(obs.image[None].clamp(0, 1), str(obs.path))[0])
    if job.progress:
        print(f"noise: {obs.path.name} sigma {255 * sigma:.2f}/255, estimated from the image (give --sigma to set it)")
    return sigma


def check_observed(restorer, obs: Observation) -> None:
    """Refuse, before any step, an image that a saturation mask would leave with no observed pixel."""
    from fdem.saturation import saturation_mask

    spec = getattr(restorer, "spec", None)
    if spec is not None:
        saturation_mask(spec.canvas, obs.image[None], str(obs.path))


def parse_sigma(text: str | None) -> float | None:
    """``--sigma``: None or ``auto`` (estimate it per image) or a number in ``[0, 255]`` (→ ``[0, 1]`` units)."""
    from fdem.validate import check_sigma255

    if text is None or text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        raise InputError(f"--sigma must be a number in [0, 255] or auto, got {text!r}") from None
    return check_sigma255(value)


def restore_all(restorer, inputs, skipped: list[tuple[str, str]], folder, job: Job) -> list[Path]:
    """Decode, restore and save every input in turn (an undecodable one is skipped); a failure
    removes the unfinished image's files (and the folder if nothing else is in it), keeping the others."""
    from fdem.io_utils import write_skipped
    from fdem.kernel_ops import kernel_mse

    written: list[Path] = []
    for j, (path, _) in enumerate(inputs):
        try:
            obs = load_observation(path, job.max_side)
        except InputError as err:
            skip(path, err, skipped)
            continue
        files: list[Path] = []
        try:
            result, truth, sigma = restore_one(restorer, obs, job, j)
            obs = replace(obs, gray=True) if (restorer.channels or 3) == 1 else obs
            save_outputs(obs, result, folder.folder(), job.trace_format, files)
            if result.kernel is not None and result.kernel.shape[1] > 1:
                print(f"  {path.name}: no verdict for a kernel field (the verdict judges one kernel)")
            elif result.kernel is not None:
                verdict = save_verdict(obs, result, sigma, "given" if job.sigma is not None else "estimated", restorer,
                                       folder.folder(), files)
                if job.field is not None and verdict.blur_varies:
                    result = refit_with_field(obs, job, j, folder.folder(), files)
        except BaseException:
            folder.discard(files)
            raise
        written += dict.fromkeys(files)
        note = f", kernel MSE {kernel_mse(result.kernel.cpu(), truth).item():.3g}" if result.kernel is not None and truth is not None else ""
        print(f"{path.name}: {job.method} in {result.seconds:.1f} s{note}")
    if not written:
        raise InputError(f"none of the {len(inputs) + len(skipped)} input(s) could be read (first: {skipped[0][1]})")
    if skipped:
        print(f"skipped {len(skipped)} unreadable input(s): see {write_skipped(folder.folder(), skipped)}")
    return written


def refit_with_field(obs: Observation, job: Job, j: int, out: Path, files: list[Path]):
    """``--kernel-grid auto`` on an image whose one-kernel verdict finds the blur varying: restore it again
    with the kernel field, whose image and field replace the one kernel's (its verdict files stay, they say
    why); returns the field's result."""
    grid = "x".join(map(str, job.field.spec.canvas.kernel_grid))
    print(f"  {obs.path.name}: the blur varies across the photo: restoring it again with a {grid} kernel field")
    result, _, _ = restore_one(job.field, obs, job, j)
    save_outputs(obs, result, out, job.trace_format, files)
    return result


def deblur_files(images: list[str], out: str | Path, restorer, job: Job, *, device,
                 max_memory: float | None = None, max_pixels: int | None = None) -> list[Path]:
    """Deblur files, folders or glob patterns (:func:`expand_inputs`) with a built ``restorer`` (any
    method of :mod:`fdem.restorers`), image ``j`` with seed ``job.seed + j``. ``max_memory``: the
    plan's limit in GB (default: most of the free memory of ``device``, :func:`fdem.memory.memory_limit`);
    a plan over it, or an image of more than ``max_pixels`` pixels, is refused before anything runs;
    each image's plan (canvas, tiles, steps, time from a warm-up call) is printed before it runs.
    Returns the files written."""
    from fdem.io_utils import OutputFolder
    from fdem.memory import MAX_PIXELS, check_pixels, check_plan, memory_limit, restorer_plan

    size = getattr(restorer, "kernel_size", 33) if restorer.blind else job.truths.shape[-1]
    inputs, skipped = probe_inputs(expand_inputs(images), size)
    limit = memory_limit(device, max_memory)
    for path, (h, w) in inputs:
        check_pixels(h, w, MAX_PIXELS if max_pixels is None else max_pixels, f"image {path}")
        h, w = fitted_size(h, w, job.max_side)
        if min(h, w) < size:
            raise InputError(f"image {path} downscaled to {h}x{w} (--max-side) is smaller than the {size}x{size} kernel")
        for planned in (restorer,) if job.field is None else (restorer, job.field):
            check_plan(restorer_plan(planned, h, w, planned.channels or 3), limit, f"image {path}")
    return restore_all(restorer, inputs, skipped, OutputFolder(out), job)


def command_options(args: argparse.Namespace) -> dict:
    """The method options given on the command line (flags left out take the preset's or the method's
    defaults); their values are checked where the method's objects are built."""
    from fdem.validate import check_int

    options = {k: getattr(args, k) for k in OPTIONS if getattr(args, k) is not None}
    if options.get("kernel_window") == 0:
        options["kernel_window"] = None
    if "saturation" in options:
        options["saturation"] = parse_saturation(options["saturation"])
    if args.trace:
        options["trace_every"] = check_int(10 if args.trace_every is None else args.trace_every, "--trace-every")
    elif args.trace_every is not None:
        raise InputError("--trace-every needs --trace")
    return options


def parse_saturation(text: str) -> float | None:
    """``--saturation``: ``off`` (None: every pixel is data) or a level in (0, 1]."""
    if text == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise InputError(f"--saturation must be a level in (0, 1] or off, got {text!r}") from None


def build_deblur_restorer(method: str, device, preset_name: str | None, options: dict):
    """The restorer ``fdem deblur`` runs: a diffusion method under ``preset_name`` (default
    :data:`~fdem.presets.DEFAULT_PHOTO_PRESET`) with the flags as overrides, any other method with its options."""
    from fdem.kernel_field import parse_grid
    from fdem.presets import DEFAULT_PHOTO_PRESET, FIELD_PRESET
    from fdem.restorers import build_restorer

    if lookup(method).guidance is not None:
        if preset_name is None and parse_grid(options.get("kernel_grid", (1, 1)), "--kernel-grid") != (1, 1):
            preset_name = FIELD_PRESET  # a field needs the options the photo preset's kernel window refuses
        return build_restorer(method, device, preset=preset_name or DEFAULT_PHOTO_PRESET, **options)
    if preset_name is not None:
        raise InputError(f"--preset applies to the diffusion samplers (dps, pigdm, fastem-*, diffem-*), not {method}")
    return build_restorer(method, device, **options)


def without_grid(options: dict) -> dict:
    """``options`` less the field's (the one-kernel run of ``--kernel-grid auto``)."""
    return {k: v for k, v in options.items() if k not in ("kernel_grid", "field_shrink", "field_gate")}


def auto_field_restorer(method: str, device, options: dict):
    """``--kernel-grid auto``'s second restorer: ``method`` under the field preset (its grid, the other
    flags as given), run on the images whose one-kernel verdict finds the blur varying."""
    from fdem.presets import FIELD_PRESET

    if not (lookup(method).blind and lookup(method).guidance is not None):
        raise InputError(f"--kernel-grid auto needs a blind diffusion method (fastem-*, diffem-*), not {method}")
    return build_deblur_restorer(method, device, FIELD_PRESET, {k: v for k, v in options.items() if k != "kernel_grid"})


def cmd_deblur(args: argparse.Namespace) -> None:
    """Deblur your images with any method (default: Fast EM ΠGDM under the photo preset, shipped prior)."""
    from fdem.devices import resolve_device
    from fdem.kernels_gen import load_bank
    from fdem.sampling.result import TRACE_FORMATS
    from fdem.validate import check_float, check_int

    if args.trace_format not in TRACE_FORMATS:
        raise InputError(f"--trace-format must be one of {', '.join(TRACE_FORMATS)}, got {args.trace_format!r}")
    max_memory = None if args.max_memory is None else check_float(args.max_memory, "--max-memory", 0, inclusive=False)
    max_pixels = None if args.max_pixels is None else check_int(args.max_pixels, "--max-pixels", 1)
    seed = check_int(args.seed, "--seed", 0)
    device = resolve_device(args.device)
    options = command_options(args)
    auto = options.get("kernel_grid") == AUTO_GRID
    restorer = build_deblur_restorer(args.method, device, args.preset, without_grid(options) if auto else options)
    field = auto_field_restorer(args.method, device, options) if auto else None
    if args.show:
        print(show_line(restorer))
        return
    if not args.images or args.out is None:
        raise InputError("give the blurry images and --out FOLDER (or --show to print the options)")
    sigma = parse_sigma(args.sigma)
    truths = load_bank(args.true_kernel) if args.true_kernel is not None else None
    if not restorer.blind and truths is None:
        raise InputError(f"method {args.method} is non-blind: give the true kernel (--true-kernel FILE)")
    max_side = None if args.max_side is None else check_int(args.max_side, "--max-side", 16)
    job = Job(args.method, sigma, seed, truths, args.trace_format, progress=True, max_side=max_side, field=field)
    deblur_files(args.images, args.out, restorer, job, device=device, max_memory=max_memory, max_pixels=max_pixels)


def show_line(restorer) -> str:
    """The resolved options of ``restorer`` (``--show``): one ``name: value`` per line."""
    import json

    return "\n".join(f"{k}: {json.dumps(v)}" for k, v in restorer.params().items())


def presets_table(method: str) -> str:
    """A markdown table of every preset's resolved options for ``method`` (``fdem presets``)."""
    from fdem.presets import PRESETS, resolve

    rows = [resolve(method, name).options(full=True) for name in PRESETS]
    lines = ["| option | " + " | ".join(r["preset"] for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    lines += ["| " + name + " | " + " | ".join("—" if r[name] is None else str(r[name]) for r in rows) + " |"
              for name in list(rows[0])[1:]]
    return "\n".join(lines)


def cmd_presets(args: argparse.Namespace) -> None:
    """Print every preset's one-line summary and the table of their resolved options for ``--method``."""
    from fdem.presets import PRESETS

    table = presets_table(args.method)  # a bad method fails here, before anything is printed
    for name, value in PRESETS.items():
        print(f"{name}: {value.summary}")
    print()
    print(table)
