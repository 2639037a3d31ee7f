"""Sampler speed: median wall time of one restorer call on a seeded blurry batch.

Every method that samples with a score prior (:mod:`fdem.method_table`) is timed the way the
benchmark runs it, ``build_restorer(...).restore(...)``, with the UNet given in memory. The UNet has
random weights (speed does not depend on them) unless a ``prior`` is given (then the rows'
equality columns mean something: with random weights the ADM's zero-initialised output layer
makes ε ≡ 0). The observation is :func:`fdem.synthetic.synthetic_batch`: the bundled photographs
(or random images) blurred by camera-shake kernels of ``k = min(33, S//2 rounded up to odd)``
(33×33 from 64×64 up) with noise σ = 10/255. Non-blind methods get the true kernel; Fast EM and
Diffusion EM the M-step with the shipped kernel denoiser; a method with a kernel chain
(``blind-dps``) a random-weight kernel UNet at ``min(64, S)``. The network runs with the speed switches of
:mod:`fdem.sampling.network_speed` (default: the device's). Warm-up calls are not timed (the first
one, compilation included, is reported as ``warmup_seconds``); the device is synchronised around
every timed call. ``steps`` overrides the respaced step count (e.g. DPS with fewer than its 1000
steps); rows keep the default beside it and the time extrapolated to it (every step costs the same).
"""

from __future__ import annotations

import csv
import math
import platform
import statistics
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn
from tqdm import tqdm

from fdem.benchmarks.flops import method_flops, peak_tflops
from fdem.devices import resolve_device, timed
from fdem.diffusion import ScheduleSpec
from fdem.validate import MAX_STEPS, check_int
from fdem.errors import InputError
from fdem.io_utils import atomic_path
from fdem.kernel_ops import kernel_mse
from fdem.method_table import Method, lookup
from fdem.metrics.fidelity import psnr
from fdem.nets.unet import NAMED_CONFIGS, ADMConfig, build_unet
from fdem.padding import network_multiple
from fdem.priors import Prior, load_prior, unet_config
from fdem.restorer_base import Restorer
from fdem.restorers import build_restorer, method_options
from fdem.sampling.network_speed import FastNet, SpeedOptions, accelerate, speed_fields
from fdem.synthetic import SIGMA, synthetic_batch

PLAIN = SpeedOptions("fp32", False, False)  # how a network given unwrapped runs
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
        if not lookup(method).score_prior:
            raise InputError(f"method {method} does not sample with a diffusion prior: the speed benchmark times those only")
    if min(batches) < 1 or particles < 1 or repeats < 1 or warmup < 0:
        raise InputError(
            f"batch sizes, particles and repeats must be >= 1 and warmup >= 0, got batch {list(batches)}, "
            f"particles {particles}, repeats {repeats}, warmup {warmup}"
        )
    if steps is not None:
        check_int(steps, "steps", 2, MAX_STEPS)


def check_size(net: nn.Module, image_size: int) -> None:
    """The image side must be a positive multiple of the UNet's ``2^(levels−1)``."""
    multiple = network_multiple(net)
    if image_size < 1 or image_size % multiple:
        raise InputError(f"image size must be a positive multiple of {multiple} for this UNet, got {image_size}")


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


def blind_kernel_size(kernel_net: nn.Module, image_size: int) -> int:
    """A kernel chain's side: 64 (the paper's), at most the image side, a multiple of the kernel UNet's."""
    multiple = network_multiple(kernel_net)
    return max(multiple, min(64, image_size) // multiple * multiple)


def speed_restorer(entry: Method, net: nn.Module, kernel_net: nn.Module | None, kernel_size: int,
                   device: torch.device, schedule: ScheduleSpec | None = None, **options) -> Restorer:
    """``entry``'s restorer on ``net`` as it is (an unwrapped one: fp32 eager) and ``kernel_net``,
    with the shipped kernel denoiser and those of ``options`` that the method takes."""
    image = net if isinstance(net, FastNet) else accelerate(net, PLAIN, device)
    wanted = {"prior": Prior(image, schedule or ScheduleSpec.assumed_for(net)), "kernel_size": kernel_size, **options}
    if kernel_net is not None:
        wanted["kernel_prior"] = Prior.of(kernel_net)
    schema = method_options(entry.name)
    return build_restorer(entry.name, device, **{k: v for k, v in wanted.items() if k in schema})


def time_calls(call: Callable[[], tuple], device: torch.device, repeats: int, warmup: int) -> tuple[float, float, tuple]:
    """``(median seconds of repeats timed calls, seconds of the first warm-up call (NaN: none), last output)``."""
    warmup_seconds = math.nan
    for w in range(warmup):
        with timed(device) as clock:
            call()
        warmup_seconds = clock.seconds if w == 0 else warmup_seconds
    times = []
    for _ in range(repeats):
        with timed(device) as clock:
            output = call()
        times.append(clock.seconds)
    return statistics.median(times), warmup_seconds, output


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
    schedule: ScheduleSpec | None = None,
    run: dict | None = None,
) -> tuple[dict, tuple]:
    """One row (and the last run's ``(image, kernel)``): median wall time of ``repeats`` calls of
    ``method``'s restorer on ``net`` (already on ``device``, possibly accelerated; trained with
    ``schedule``, default T = 1000 linear); with a ``reference`` output of the same data and seeds,
    the equality columns. ``run``: a diffusion method's preset and field overrides (:func:`fdem.presets.resolve`,
    e.g. ``{"preset": "few-step", "kernel_init": "dirac"}``; default: the ``paper`` preset), timed as resolved."""
    check_options([method], [batch], particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    check_size(net, image_size)
    device, entry = resolve_device(device), lookup(method)
    if entry.kernel_chain and kernel_net is None:
        raise InputError(f"{method} needs a kernel network")
    x, kernels, y = synthetic_batch(batch, image_size, seed=seed, images=images)
    size = blind_kernel_size(kernel_net, image_size) if entry.kernel_chain else kernels.shape[-1]
    restorer = speed_restorer(entry, net, kernel_net, size, device, schedule,
                              **{"particles": particles, "steps": steps or entry.default_steps, "em_iters": em_iters,
                                 **(run or {})})
    resolved = restorer.spec.options() if hasattr(restorer, "spec") else {}
    call = restore_call(restorer, y.to(device), kernels.to(device), seed)
    seconds, warmup_seconds, output = time_calls(call, device, repeats, warmup)
    calls, full_calls = entry.net_calls(steps, em_iters), entry.net_calls(None, 10)
    fields = speed_fields(net)
    row = {
        "method": method,
        "steps": steps or entry.default_steps,
        "default_steps": entry.default_steps,
        "em_iters": em_iters if entry.em == "diffem" else None,
        "preset": resolved.get("preset"),
        "step_rule": resolved.get("step_rule", "ddpm"),
        "eta": resolved["eta"] if resolved.get("step_rule", "ddpm") != "ddpm" else None,
        "start": resolved.get("start", 1.0),
        "kernel_init": resolved.get("kernel_init"),
        "kernel_relax": resolved.get("kernel_relax"),
        "net_calls": calls,
        "batch": batch,
        "particles": particles,
        "image_size": image_size,
        "kernel_size": size,
        "unet": unet_name,
        "params": sum(p.numel() for p in net.parameters()),
        **fields,
        **timing(seconds, warmup_seconds, batch, calls, full_calls),
        **throughput(method, net, kernel_net, image_size, size, steps, em_iters, batch * particles / seconds, device,
                     fields["precision"], particles),
        **(equality(output, reference, x, kernels) if reference is not None else NO_REFERENCE),
        "repeats": repeats,
        "warmup": warmup,
        **machine(device),
    }
    return row, output


def restore_call(restorer, y: torch.Tensor, kernels: torch.Tensor, seed: int):
    """A no-argument call of ``restorer`` on ``y`` returning ``(image, kernel)``, for :func:`time_calls`."""

    def call() -> tuple:
        result = restorer.restore(y, SIGMA, kernel=kernels, seed=seed)
        return result.image, result.kernel

    return call


def timing(seconds: float, warmup_seconds: float, batch: int, calls: int, full_calls: int) -> dict:
    """The time columns of a row; the last one extrapolated to the default step count (every step costs the same)."""
    return {"sec_per_call": seconds, "sec_per_image": seconds / batch, "images_per_sec": batch / seconds,
            "sec_per_image_default_steps": seconds / batch * full_calls / calls, "warmup_seconds": warmup_seconds}


def machine(device: torch.device) -> dict:
    """Where a row was timed: device, its name, torch version, CPU threads."""
    return {"device": str(device), "device_name": device_name(device), "torch": torch.__version__,
            "threads": torch.get_num_threads()}


def throughput(method: str, net: nn.Module, kernel_net: nn.Module | None, image_size: int, kernel_size: int,
               steps: int | None, em_iters: int, runs_per_sec: float, device: torch.device, precision: str,
               particles: int) -> dict:
    """The FLOP columns: counted GFLOP per image, achieved TFLOP/s at ``runs_per_sec`` sampler runs
    per second, the device's datasheet peak and the ratio."""
    cfg, kernel_cfg = getattr(net, "cfg", None), getattr(kernel_net, "cfg", None)
    flops = method_flops(method, cfg, image_size, steps, em_iters, kernel_cfg, kernel_size) if cfg is not None else math.nan
    achieved = flops * runs_per_sec / 1e12
    peak = peak_tflops(device_name(device), precision) if device.type != "cpu" else math.nan
    return {"gflop_per_image": flops * particles / 1e9, "achieved_tflops": achieved, "peak_tflops": peak,
            "peak_ratio": achieved / peak}


def time_method(method: str, net: nn.Module, image_size: int, batch: int, **options) -> dict:
    """One row of :func:`measure` (``net`` already on ``device``)."""
    return measure(method, net, image_size, batch, **options)[0]


def build_prior(unet: str | Path | ADMConfig | dict, device: torch.device, prior: str | Path | None = None,
                seed: int = 0) -> Prior:
    """The UNet ``unet`` with random weights (seeded; T = 1000 linear), or the prior file ``prior``
    (``"shipped"``: the shipped image prior; ``"random"``: random weights with the normally
    zero-initialised output layer drawn too, so that ε ≢ 0 and the equality columns test the
    arithmetic without a checkpoint)."""
    if prior is None or str(prior) == "random":
        torch.manual_seed(seed)
        net = build_unet(unet_config(unet))
        if prior is not None:
            nn.init.normal_(net.out[-1].weight, std=RANDOM_OUTPUT_STD)
        return Prior.of(net.to(device).eval().requires_grad_(False))
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
    is the kernel network of a method with a kernel chain (blind-dps; default: ``kernel64`` beside
    ``ffhq256``, else ``kernel-small64``).

    ``threads`` sets torch's CPU threads for the run (restored afterwards).
    """
    check_options(methods, batches, particles=particles, steps=steps, repeats=repeats, warmup=warmup)
    if threads is not None and threads < 1:
        raise InputError(f"threads must be >= 1, got {threads}")
    device = resolve_device(device)
    loaded = build_prior(unet, device, prior, seed)
    check_size(loaded.net, image_size)
    options = (speed or SpeedOptions()).resolve(device)
    net = accelerate(loaded.net, options, device)
    kernel_net = None
    if any(lookup(m).kernel_chain for m in methods):
        kernel_unet = kernel_unet or ("kernel64" if unet == "ffhq256" else "kernel-small64")
        kernel_net = accelerate(build_prior(kernel_unet, device, seed=seed).net, options, device)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        grid = [(m, b) for m in methods for b in batches]
        return [
            time_method(
                method, net, image_size, batch, particles=particles, steps=steps, device=device, repeats=repeats,
                warmup=max(warmup, int(options.compile)), seed=seed, unet_name=_unet_name(unet),
                em_iters=em_iters, kernel_net=kernel_net, images=images, schedule=loaded.schedule,
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


def kernel_label(kernel_init: str | None, kernel_relax: float | None) -> str:
    """``", alternation start, γ=2"``: the blind kernel's start and relaxation where not the paper's (else "")."""
    label = f", {kernel_init} start" if kernel_init not in (None, "dirac") else ""
    return label + (f", γ={kernel_relax:g}" if kernel_relax not in (None, 1.0) else "")


def _steps_cell(row: dict) -> str:
    cell = str(row["steps"])
    if row["net_calls"] != row["steps"]:
        cell += f" ×{row['net_calls'] // row['steps']} rounds"
    if row["steps"] != row["default_steps"]:
        cell += f" (default {row['default_steps']})"
    if row.get("step_rule", "ddpm") != "ddpm":
        cell += f" {row['step_rule']} η={row['eta']:g}"
    if row.get("start", 1.0) < 1:
        cell += f" from {row['start']:g}"
    return cell + kernel_label(row.get("kernel_init"), row.get("kernel_relax"))


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
