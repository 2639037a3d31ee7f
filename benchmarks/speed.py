"""Sampler speed: median wall time of :func:`~fdem.sampling.methods.run_method` on a random blurry batch.

The UNet has random weights (speed does not depend on them). The observation is seeded: random
images in ``[0, 1]`` blurred by camera-shake kernels of ``k = min(33, S//2 rounded up to odd)``
(33×33 from 64×64 up) with noise σ = 10/255. Non-blind methods get the true kernel; blind ones
the M-step with the shipped 33×33 kernel denoiser. Warm-up calls are not timed; the device is
synchronised around every timed call. ``steps`` overrides the respaced step count (e.g. DPS with
fewer than its 1000 steps); rows keep the default beside it.
"""

from __future__ import annotations

import csv
import platform
import statistics
import time
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import torch
from torch import nn
from tqdm import tqdm

from fdem.deblur import network_multiple
from fdem.diffusion import MAX_STEPS
from fdem.errors import InputError
from fdem.io_utils import atomic_path
from fdem.nets.unet import NAMED_CONFIGS, ADMConfig, build_unet
from fdem.physics import add_noise, blur
from fdem.priors import unet_config
from fdem.restorers import synchronize
from fdem.sampling.methods import DEFAULT_STEPS, MStepConfig, parse_method, run_method, total_steps
from kernels_gen import make_generator

SIGMA = 10 / 255
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
        parse_method(method)
    if min(batches) < 1 or particles < 1 or repeats < 1 or warmup < 0:
        raise InputError(
            f"batch sizes, particles and repeats must be >= 1 and warmup >= 0, got batch {list(batches)}, "
            f"particles {particles}, repeats {repeats}, warmup {warmup}"
        )
    if steps is not None and not 2 <= steps <= MAX_STEPS:
        raise InputError(f"steps must be in [2, {MAX_STEPS}], got {steps}")


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
def _shipped_denoiser(device: torch.device) -> nn.Module:
    from fdem.nets.kernel_denoiser import load_kernel_denoiser

    return load_kernel_denoiser(33, device=device)


def blurry_batch(batch: int, image_size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Seeded ``(y (B, 3, S, S), kernels (B, 1, k, k))``: random images, camera-shake blur, σ = 10/255."""
    size = min(33, (image_size // 2) | 1)
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, image_size, image_size, generator=g)
    kernels = make_generator("camera-shake", size).sample(batch, seed)
    return add_noise(blur(x, kernels), SIGMA, generator=g), kernels


def time_method(
    method: str,
    net: nn.Module,
    image_size: int,
    batch: int,
    *,
    particles: int = 1,
    steps: int | None = None,
    device: str | torch.device = "cpu",
    repeats: int = 3,
    warmup: int = 1,
    seed: int = 0,
    unet_name: str = "custom",
) -> dict:
    """One row: median wall time of ``repeats`` calls of ``method`` (``net`` already on ``device``)."""
    check_options([method], [batch], particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    check_size(net, image_size)
    device = resolve_device(device)
    guidance, em = parse_method(method)
    y, kernels = blurry_batch(batch, image_size, seed)
    y, kernels = y.to(device), kernels.to(device)
    size = kernels.shape[-1]
    options = {"mstep": MStepConfig(kernel_size=size, denoiser=_shipped_denoiser(device))} if em else {"kernel": kernels}

    def call() -> None:
        run_method(method, net, y, SIGMA, particles=particles, steps=steps, seed=seed, **options)

    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        call()
        synchronize(device)
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    return {
        "method": method,
        "steps": steps or DEFAULT_STEPS[guidance],
        "default_steps": DEFAULT_STEPS[guidance],
        "net_calls": total_steps(method, steps),
        "batch": batch,
        "particles": particles,
        "image_size": image_size,
        "kernel_size": size,
        "unet": unet_name,
        "params": sum(p.numel() for p in net.parameters()),
        "sec_per_call": seconds,
        "sec_per_image": seconds / batch,
        "images_per_sec": batch / seconds,
        "repeats": repeats,
        "warmup": warmup,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }


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
) -> list[dict]:
    """:func:`time_method` over methods × batch sizes with a random-weight UNet (named, YAML or fields).

    ``threads`` sets torch's CPU threads for the run (restored afterwards).
    """
    check_options(methods, batches, particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    device = resolve_device(device)
    torch.manual_seed(0)
    net = build_unet(unet_config(unet)).to(device).eval().requires_grad_(False)
    check_size(net, image_size)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        grid = [(m, b) for m in methods for b in batches]
        return [
            time_method(
                method, net, image_size, batch, particles=particles, steps=steps, device=device,
                repeats=repeats, warmup=warmup, seed=seed, unet_name=_unet_name(unet),
            )
            for method, batch in tqdm(grid, desc="speed", unit="run", disable=not progress)
        ]
    finally:
        torch.set_num_threads(previous)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    """Write ``rows`` as CSV atomically; returns the path."""
    if not rows:
        raise InputError("no rows to write")
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
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
        "| method | steps | batch | particles | s / call | s / image | images / s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['method']} | {_steps_cell(r)} | {r['batch']} | {r['particles']} | {r['sec_per_call']:.3f} "
            f"| {r['sec_per_image']:.3f} | {r['images_per_sec']:.3f} |"
        )
    return "\n".join(lines)
