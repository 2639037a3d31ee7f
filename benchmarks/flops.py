"""Counted FLOPs of the score networks and the vendors' peak throughput: how close to the hardware.

FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode` on meta tensors (no memory,
no compute, any device) for one network forward and for one forward + input VJP, the work of an
unguided and of a guided sampler step. Only the networks are counted (convolutions, matmuls,
attention): the FFTs of the guidance and the M-step are a fraction of a percent at 256². For the
FFHQ-256 ADM UNet at 256² the count is 776 GFLOP per forward + VJP, the figure of docs/design.md §6.

Peaks are dense (no 2:4 sparsity) tensor-core TFLOP/s from NVIDIA's datasheets; ``fp32`` is the
non-tensor-core FP32 peak. Unknown devices (and CPUs) get NaN.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch.utils.flop_counter import FlopCounterMode

from fdem.diffusion import Schedule
from fdem.method_table import lookup
from fdem.nets.unet import ADMConfig, build_unet
from fdem.presets import SamplerSpec
from fdem.sampling.guidance import make_guidance

# (substrings that must all be in the device name, {precision: dense TFLOP/s}); first match wins.
PEAK_TFLOPS: list[tuple[tuple[str, ...], dict[str, float]]] = [
    (("H200", "NVL"), {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (("H200",), {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),
    (("H100", "NVL"), {"bf16": 835.5, "tf32": 417.5, "fp32": 60.0}),
    (("H100", "PCIE"), {"bf16": 756.5, "tf32": 378.0, "fp32": 51.2}),
    (("H100",), {"bf16": 989.4, "tf32": 494.7, "fp32": 66.9}),  # SXM5 ("NVIDIA H100 80GB HBM3")
    (("A100",), {"bf16": 312.0, "tf32": 156.0, "fp32": 19.5}),
]


def peak_tflops(device_name: str, precision: str) -> float:
    """The datasheet's dense peak of ``device_name`` at ``precision`` (fp32, tf32, bf16); NaN if unknown."""
    name = device_name.upper()
    for keys, peaks in PEAK_TFLOPS:
        if all(k in name for k in keys):
            return peaks.get(precision, math.nan)
    return math.nan


@lru_cache(maxsize=None)
def network_flops(cfg: ADMConfig, size: int) -> tuple[float, float]:
    """``(forward, forward + input VJP)`` FLOPs of the UNet ``cfg`` for one ``size × size`` image."""
    with torch.device("meta"):
        net = build_unet(cfg).requires_grad_(False)
        x = torch.zeros(1, cfg.in_channels, size, size, requires_grad=True)
        t = torch.zeros(1)
    with FlopCounterMode(display=False) as counter:
        net(x, t)
    forward = counter.get_total_flops()
    with FlopCounterMode(display=False) as counter:
        out = net(x, t)[:, : cfg.in_channels]
        out.backward(torch.ones_like(out))  # autograd.grad is not supported under the counter
    return float(forward), float(counter.get_total_flops())


def guided_steps(method: str, steps: int | None = None) -> tuple[int, int]:
    """``(guided, unguided)`` network calls of one sampling round (a zero guidance weight: no VJP)."""
    entry = lookup(method)
    schedule = Schedule.make(1000, steps or entry.default_steps)
    weights = make_guidance(entry.guidance, schedule, SamplerSpec()).weights  # the ancestral rule: the paper's
    guided = sum(1 for w in weights if w != 0.0)
    return guided, len(weights) - guided


def method_flops(method: str, cfg: ADMConfig, size: int, steps: int | None = None, em_iters: int = 10,
                 kernel_cfg: ADMConfig | None = None, kernel_size: int = 64) -> float:
    """Network FLOPs per image of one run of ``method`` (a kernel chain: image and kernel networks,
    every step guided)."""
    entry = lookup(method)
    forward, guided = network_flops(cfg, size)
    if entry.kernel_chain:
        kernel = network_flops(kernel_cfg, kernel_size)[1] if kernel_cfg is not None else 0.0
        return entry.net_calls(steps) * (guided + kernel)
    with_vjp, without = guided_steps(method, steps)
    return entry.rounds(em_iters) * (with_vjp * guided + without * forward)
