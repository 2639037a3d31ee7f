"""Sampler speed: median wall time of one sampler run on a seeded blurry batch.

The UNet has random weights (speed does not depend on them) unless a ``prior`` is given (then
the rows' equality columns mean something: with random weights the ADM's zero-initialised output
layer makes ε ≡ 0). The observation is seeded: the bundled photographs (or random images) blurred
by camera-shake kernels of ``k = min(33, S//2 rounded up to odd)`` (33×33 from 64×64 up) with
noise σ = 10/255. Non-blind methods get the true kernel; Fast EM and Diffusion EM the M-step with
the shipped kernel denoiser; ``blind-dps`` (:mod:`fdem.sampling.blind_dps`) a random-weight
kernel UNet at ``min(64, S)``. The network runs with the speed switches of
:mod:`fdem.sampling.fast_path` (default: the device's). Warm-up calls are not timed (the first
one, compilation included, is reported as ``warmup_seconds``); the device is synchronised around
every timed call. ``steps`` overrides the respaced step count (e.g. DPS with fewer than its 1000
steps); rows keep the default beside it and the time extrapolated to it (every step costs the same).
"""

from __future__ import annotations

import csv
import math
import platform
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from fdem.benchmarks.flops import method_flops, peak_tflops
from fdem.deblur import network_multiple
from fdem.diffusion import check_steps
from fdem.errors import InputError
from fdem.io_utils import atomic_path
from fdem.kernel_ops import kernel_mse
from fdem.metrics.fidelity import psnr
from fdem.nets.unet import NAMED_CONFIGS, ADMConfig, build_unet
from fdem.physics import add_noise, blur
from fdem.priors import unet_config
from fdem.restorers import synchronize
from fdem.sampling.fast_path import SpeedOptions, accelerate, speed_fields
from fdem.sampling.methods import (
    DEFAULT_STEPS,
    METHODS,
    MStepConfig,
    make_generators,
    parse_method,
    run_method,
    total_steps,
)
from fdem.kernels_gen import make_generator

SIGMA = 10 / 255
METHODS_TIMED = METHODS + ("blind-dps",)
BLIND_DPS_STEPS = 1000
PSNR_TOLERANCE, KERNEL_MSE_TOLERANCE = 0.1, 1e-6  # "equal results" (issue 7)
RANDOM_OUTPUT_STD = 0.05  # output-layer weights of prior="random"
CONTEXT = ("unet", "params", "image_size", "kernel_size", "device_name", "torch", "threads", "repeats", "warmup")


def parse_list(text: str, flag: str, cast: type = str) -> list:
    """``"1,4"`` → ``[1, 4]`` (with ``cast=int``); a bad or empty item is an InputError naming ``flag``."""
    items = [item.strip() for item in text.split(",")]
    try:
        values = [cast(item) for item in items if item]
    except ValueError as err:
        raise InputError(f"{flag}: expected a comma-separated list, got {text!r}") from err
    if not values:
        raise InputError(f"{flag}: expected at least one value, got {text!r}")
    return values


def check_options(
    methods: Sequence[str], batches: Sequence[int], *, particles: int, steps: int | None, repeats: int, warmup: int
) -> None:
    """Raise an InputError for an unknown method or a value out of range."""
    if not methods or not batches:
        raise InputError("give at least one method and one batch size")
    for method in methods:
        if method not in METHODS_TIMED:
            raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHODS_TIMED)}")
    if min(batches) < 1 or particles < 1 or repeats < 1 or warmup < 0:
        raise InputError(
            f"batch sizes, particles and repeats must be >= 1 and warmup >= 0, got batch {list(batches)}, "
            f"particles {particles}, repeats {repeats}, warmup {warmup}"
        )
    check_steps(steps)


def check_size(net: nn.Module, image_size: int) -> None:
    """The image side must be a positive multiple of the UNet's ``2^(levels−1)``."""
    multiple = network_multiple(net)
    if image_size < 1 or image_size % multiple:
        raise InputError(f"image size must be a positive multiple of {multiple} for this UNet, got {image_size}")


def resolve_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device; an unknown or unavailable one is an InputError."""
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"unknown device {str(device)!r}") from err
    if device.type != "cpu":
        accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
        if accelerator is None or accelerator.type != device.type:
            raise InputError(f"device {device} is not available on this machine")
    return device


def device_name(device: torch.device) -> str:
    """The CPU model (``/proc/cpuinfo``, else ``platform.processor()``) or the accelerator's name."""
    if device.type == "cpu":
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            pass
        return platform.processor() or "cpu"
    get_name = getattr(torch.get_device_module(device), "get_device_name", None)
    return get_name(device) if get_name else str(device)


@lru_cache(maxsize=None)
def _shipped_denoiser(size: int, device: torch.device) -> nn.Module:
    from fdem.nets.kernel_denoiser import denoiser_for_kernel

    return denoiser_for_kernel(size, None, device)


def sharp_batch(batch: int, image_size: int, images: str = "bundled", seed: int = 0) -> torch.Tensor:
    """``(B, 3, S, S)`` sharp images: the bundled photographs (held-out ones first, cycled) or random ones."""
    if images == "random":
        return torch.rand(batch, 3, image_size, image_size, generator=torch.Generator().manual_seed(seed))
    if images != "bundled":
        raise InputError(f"images must be bundled or random, got {images!r}")
    photos = _photos(image_size)
    return torch.stack([photos[b % len(photos)] for b in range(batch)])


@lru_cache(maxsize=4)
def _photos(image_size: int) -> list[torch.Tensor]:
    """The bundled photographs at ``image_size``, the held-out ones first."""
    from fdem.imageio import HELD_OUT_IMAGES, default_images

    return [image for _, image in sorted(default_images(image_size), key=lambda item: item[0] not in HELD_OUT_IMAGES)]


def blurry_batch(batch: int, image_size: int, seed: int = 0, images: str = "bundled") -> tuple[torch.Tensor, ...]:
    """Seeded ``(x, y, kernels)``: sharp images, their camera-shake blur with σ = 10/255, the kernels."""
    size = min(33, (image_size // 2) | 1)
    x = sharp_batch(batch, image_size, images, seed)
    kernels = make_generator("camera-shake", size).sample(batch, seed)
    return x, add_noise(blur(x, kernels), SIGMA, generator=torch.Generator().manual_seed(seed + 1)), kernels


def default_steps(method: str) -> int:
    return BLIND_DPS_STEPS if method == "blind-dps" else DEFAULT_STEPS[parse_method(method)[0]]


def net_calls(method: str, steps: int | None = None, em_iters: int = 10) -> int:
    """Sampling steps per image of ``method`` (blind-dps: each step calls both of its networks)."""
    return (steps or BLIND_DPS_STEPS) if method == "blind-dps" else total_steps(method, steps, em_iters)


def blind_kernel_size(kernel_net: nn.Module, image_size: int) -> int:
    """Blind-DPS's kernel side: 64 (the paper's), at most the image side, a multiple of the kernel UNet's."""
    multiple = network_multiple(kernel_net)
    return max(multiple, min(64, image_size) // multiple * multiple)


def make_call(method: str, net: nn.Module, y: torch.Tensor, kernels: torch.Tensor, *, particles: int = 1,
              steps: int | None = None, em_iters: int = 10, seed: int = 0, kernel_net: nn.Module | None = None):
    """A function running ``method`` once on ``y`` and returning ``(image, kernel or None)``."""
    device = y.device
    if method == "blind-dps":
        from fdem.sampling.blind_dps import run_blind_dps

        if kernel_net is None:
            raise InputError("blind-dps needs a kernel network")
        size = blind_kernel_size(kernel_net, y.shape[-1])

        def blind() -> tuple[torch.Tensor, torch.Tensor | None]:
            generators = make_generators(seed, y.shape[0], device)
            return run_blind_dps(net, kernel_net, y, size, steps or BLIND_DPS_STEPS, generators)

        return blind
    em = parse_method(method)[1]
    size = kernels.shape[-1]
    options = {"mstep": MStepConfig(kernel_size=size, denoiser=_shipped_denoiser(size, device))} if em else {"kernel": kernels}

    def call() -> tuple[torch.Tensor, torch.Tensor | None]:
        result = run_method(method, net, y, SIGMA, particles=particles, steps=steps, seed=seed, em_iters=em_iters, **options)
        return result.image, result.kernel

    return call


def equality(output: tuple, reference: tuple, x: torch.Tensor, kernels: torch.Tensor) -> dict:
    """Differences from a reference run: of the mean PSNR and mean kernel MSE (as a table would show
    them; ``equal`` holds these to the issue-7 bound) and the largest per-image ones."""
    image, kernel = (t.detach().float().cpu() if t is not None else None for t in output)
    ref_image, ref_kernel = (t.detach().float().cpu() if t is not None else None for t in reference)
    d_psnr = psnr(image, x) - psnr(ref_image, x)
    d_kernel = torch.full((1,), math.nan)
    if kernel is not None and ref_kernel is not None:
        d_kernel = kernel_mse(kernel, kernels) - kernel_mse(ref_kernel, kernels)
    mean_psnr, mean_kernel = float(d_psnr.mean()), float(d_kernel.mean())
    equal = abs(mean_psnr) < PSNR_TOLERANCE and (math.isnan(mean_kernel) or abs(mean_kernel) < KERNEL_MSE_TOLERANCE)
    return {"psnr_diff_db": mean_psnr, "kernel_mse_diff": mean_kernel,
            "psnr_diff_max_db": float(d_psnr.abs().max()), "kernel_mse_diff_max": float(d_kernel.abs().max()),
            "max_abs_diff": float((image - ref_image).abs().max()), "equal": equal}


NO_REFERENCE = {"psnr_diff_db": math.nan, "kernel_mse_diff": math.nan, "psnr_diff_max_db": math.nan,
                "kernel_mse_diff_max": math.nan, "max_abs_diff": math.nan, "equal": None}


def measure(
    method: str,
    net: nn.Module,
    image_size: int,
    batch: int,
    *,
    particles: int = 1,
    steps: int | None = None,
    em_iters: int = 10,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    unet_name: str = "custom",
    kernel_net: nn.Module | None = None,
    images: str = "bundled",
    reference: tuple | None = None,
) -> tuple[dict, tuple]:
    """One row (and the last run's ``(image, kernel)``): median wall time of ``repeats`` calls of
    ``method`` with ``net`` (already on ``device``, possibly accelerated); with a ``reference``
    output of the same data and seeds, the equality columns."""
    check_options([method], [batch], particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    check_size(net, image_size)
    device = resolve_device(device)
    x, y, kernels = blurry_batch(batch, image_size, seed, images)
    call = make_call(method, net, y.to(device), kernels.to(device), particles=particles, steps=steps,
                     em_iters=em_iters, seed=seed, kernel_net=kernel_net)
    warmup_seconds = math.nan
    for w in range(warmup):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        warmup_seconds = time.perf_counter() - start if w == 0 else warmup_seconds
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        output = call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    calls, full_calls = net_calls(method, steps, em_iters), net_calls(method, None, 10)
    cfg = getattr(net, "cfg", None)
    kernel_cfg = getattr(kernel_net, "cfg", None)
    size = blind_kernel_size(kernel_net, image_size) if method == "blind-dps" else kernels.shape[-1]
    flops = method_flops(method, cfg, image_size, steps, em_iters, kernel_cfg, size) if cfg is not None else math.nan
    fields = speed_fields(net)
    achieved = flops * batch * particles / seconds / 1e12
    peak = peak_tflops(device_name(device), fields["precision"]) if device.type != "cpu" else math.nan
    row = {
        "method": method,
        "steps": steps or default_steps(method),
        "default_steps": default_steps(method),
        "em_iters": em_iters if method.startswith("diffem") else None,
        "net_calls": calls,
        "batch": batch,
        "particles": particles,
        "image_size": image_size,
        "kernel_size": size,
        "unet": unet_name,
        "params": sum(p.numel() for p in net.parameters()),
        **fields,
        "sec_per_call": seconds,
        "sec_per_image": seconds / batch,
        "images_per_sec": batch / seconds,
        "sec_per_image_default_steps": seconds / batch * full_calls / calls,
        "warmup_seconds": warmup_seconds,
        "gflop_per_image": flops * particles / 1e9,
        "achieved_tflops": achieved,
        "peak_tflops": peak,
        "peak_ratio": achieved / peak,
        **(equality(output, reference, x, kernels) if reference is not None else NO_REFERENCE),
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    return row, output


def time_method(method: str, net: nn.Module, image_size: int, batch: int, **options) -> dict:
    """One row of :func:`measure` (``net`` already on ``device``)."""
    return measure(method, net, image_size, batch, **options)[0]


def build_network(unet: str | Path | ADMConfig | dict, device: torch.device, prior: str | Path | None = None,
                  seed: int = 0) -> nn.Module:
    """The UNet ``unet``: random weights (seeded), or those of ``prior`` (``"shipped"``: the shipped
    image prior; ``"random"``: random weights with the normally zero-initialised output layer drawn
    too, so that ε ≢ 0 and the equality columns test the arithmetic without a checkpoint)."""
    if prior is None or str(prior) == "random":
        torch.manual_seed(seed)
        net = build_unet(unet_config(unet))
        if prior is not None:
            nn.init.normal_(net.out[-1].weight, std=RANDOM_OUTPUT_STD)
        return net.to(device).eval().requires_grad_(False)
    from fdem.priors import load_prior

    return load_prior(None if str(prior) == "shipped" else prior, unet, device=device)


def _unet_name(unet: str | Path | ADMConfig | dict) -> str:
    if isinstance(unet, str) and unet in NAMED_CONFIGS:
        return unet
    return Path(unet).stem if isinstance(unet, (str, Path)) else "custom"


def run_speed(
    methods: Sequence[str],
    unet: str | Path | ADMConfig | dict,
    image_size: int,
    batches: Sequence[int],
    *,
    particles: int = 1,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    threads: int | None = None,
    progress: bool = True,
    speed: SpeedOptions | None = None,
    prior: str | Path | None = None,
    em_iters: int = 10,
    kernel_unet: str | ADMConfig | dict | None = None,
    images: str = "bundled",
) -> list[dict]:
    """:func:`time_method` over methods × batch sizes with a UNet (named, YAML or fields; random
    weights unless ``prior``) run with ``speed`` (default: the device's switches). ``kernel_unet``
    is blind-dps's kernel network (default: ``kernel64`` beside ``ffhq256``, else ``kernel-small64``).

    ``threads`` sets torch's CPU threads for the run (restored afterwards).
    """
    check_options(methods, batches, particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    device = resolve_device(device)
    net = build_network(unet, device, prior, seed)
    check_size(net, image_size)
    options = (speed or SpeedOptions()).resolve(device)
    net = accelerate(net, options, device)
    kernel_unet = kernel_unet or ("kernel64" if unet == "ffhq256" else "kernel-small64")
    kernel_net = accelerate(build_network(kernel_unet, device, seed=seed), options, device) if "blind-dps" in methods else None
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        grid = [(m, b) for m in methods for b in batches]
        return [
            time_method(
                method, net, image_size, batch, particles=particles, steps=steps, device=device, repeats=repeats,
                warmup=max(warmup, int(options.compile)), seed=seed, unet_name=_unet_name(unet),
                em_iters=em_iters, kernel_net=kernel_net, images=images,
            )
            for method, batch in tqdm(grid, desc="speed", unit="run", disable=not progress)
        ]
    finally:
        torch.set_num_threads(previous)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as CSV atomically (columns: every key, in order of appearance); returns the path."""
    if not rows:
        raise InputError("no rows to write")
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)
    return Path(path)


def _steps_cell(row: dict) -> str:
    cell = str(row["steps"])
    if row["net_calls"] != row["steps"]:
        cell += f" ×{row['net_calls'] // row['steps']} rounds"
    if row["steps"] != row["default_steps"]:
        cell += f" (default {row['default_steps']})"
    return cell


def markdown_table(rows: list[dict]) -> str:
    """A caption with the shared context (UNet, device, threads, ...) and one table line per row."""
    context = {key: " / ".join(dict.fromkeys(f"{r[key]:,}" if key == "params" else str(r[key]) for r in rows)) for key in CONTEXT}
    lines = [
        f"UNet {context['unet']} ({context['params']} parameters), {context['image_size']}² images, "
        f"{context['kernel_size']}² kernels, {context['device_name']}, torch {context['torch']}, "
        f"{context['threads']} thread(s); median of {context['repeats']} timed run(s) after {context['warmup']} warm-up",
        "",
        "| method | steps | batch | particles | precision | compiled | layout | threads | s / call | s / image "
        "| images / s | TFLOP/s | ΔPSNR (dB) | Δ kernel MSE |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_steps_cell(r)} | {r['batch']} | {r['particles']} | {r['precision']} "
            f"| {'yes' if r['compiled'] else 'no'} | {'NHWC' if r['channels_last'] else 'NCHW'} | {r['threads']} "
            f"| {r['sec_per_call']:.3f} | {r['sec_per_image']:.3f} | {r['images_per_sec']:.3f} "
            f"| {r['achieved_tflops']:.3g} | {_cell(r['psnr_diff_db'], '+.3f')} | {_cell(r['kernel_mse_diff'], '+.2e')} |"
        )
    return "\n".join(lines)


def _cell(value: float, spec: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, spec)
