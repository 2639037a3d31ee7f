"""How far apart two fp32 runs of a sampler are: the floor under any "equal results" bound.

Runs a method with the shipped small prior on the prior-check problems (64×64 crops of the
held-out photographs, 17×17 camera-shake kernels, σ = 10/255), once on the fp32 eager path with
one thread and once per variant that changes nothing but rounding: the observation moved by
1e-6 (Gaussian), two threads, channels-last, bf16 autocast. For each variant it prints the
difference of the mean PSNR and mean kernel MSE (what a table shows) and the largest per-image
differences, at each requested step count::

    python -m studies.equality.equality_floor [--method fastem-pigdm] [--steps 100 20] [--per-image 4]

If moving ``y`` by 1e-6 already changes single results by decibels, a per-image bound on any
switch that rounds differently cannot hold, and only differences of means over many images are
meaningful (see README, Speed).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace

import torch
from tqdm import tqdm

from fdem.benchmarks.speed import equality
from fdem.method_table import lookup
from fdem.priors import load_prior
from fdem.sampling.network_speed import SpeedOptions, accelerate
from studies.common import make_problems, run_preset, run_script

SIGMA = 10 / 255
PERTURBATION = 1e-6


@dataclass(frozen=True)
class Variant:
    """One way of running the same computation: observation offset, thread count, network switches."""

    name: str
    perturb: float = 0.0
    threads: int = 1
    options: SpeedOptions = SpeedOptions("fp32", False, False)


VARIANTS = (
    Variant("y + 1e-6 noise", perturb=PERTURBATION),
    Variant("2 threads", threads=2),
    Variant("channels-last", options=SpeedOptions("fp32", True, False)),
    Variant("bf16 autocast", options=SpeedOptions("bf16", False, False)),
)
REFERENCE = Variant("fp32 eager, 1 thread")


def restore(variant: Variant, method: str, y: torch.Tensor, kernels: torch.Tensor, steps: int) -> tuple:
    """``(image, kernel)`` of ``method`` on ``y`` run as ``variant`` (seeds 0..B−1, as always); the
    non-blind methods get the true ``kernels``, the blind ones only their size."""
    torch.set_num_threads(variant.threads)
    prior = load_prior(None)
    net = accelerate(prior.net, variant.options, "cpu")
    if variant.perturb:
        y = y + variant.perturb * torch.randn(y.shape, generator=torch.Generator().manual_seed(1))
    blind = lookup(method).blind
    result = run_preset(method, replace(prior, net=net), y, SIGMA, steps=steps, kernel=None if blind else kernels,
                     kernel_size=kernels.shape[-1])
    return result.image, result.kernel


def floor_rows(method: str, steps_list: list[int], per_image: int, kernel_size: int = 17,
               variants=VARIANTS) -> list[dict]:
    """One row per (steps, variant): the :func:`fdem.benchmarks.speed.equality` columns against the reference."""
    sharp, kernels, y = make_problems(64, kernel_size, per_image, SIGMA)
    rows = []
    saved_threads = torch.get_num_threads()
    try:
        with tqdm(total=len(steps_list) * (len(variants) + 1), desc="equality floor", unit="run") as bar:
            for steps in steps_list:
                reference = restore(REFERENCE, method, y, kernels, steps)
                bar.update()
                for variant in variants:
                    output = restore(variant, method, y, kernels, steps)
                    rows.append({"steps": steps, "variant": variant.name, **equality(output, reference, sharp, kernels)})
                    bar.update()
    finally:
        torch.set_num_threads(saved_threads)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| steps | variant | ΔPSNR of the mean (dB) | max per-image \\|ΔPSNR\\| | Δ mean kernel MSE "
             "| max per-image \\|Δ kernel MSE\\| | max \\|Δ pixel\\| |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['steps']} | {r['variant']} | {r['psnr_diff_db']:+.3f} | {r['psnr_diff_max_db']:.3f} "
                     f"| {r['kernel_mse_diff']:+.2e} | {r['kernel_mse_diff_max']:.2e} | {r['max_abs_diff']:.2e} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", default="fastem-pigdm", help="a diffusion method (dps, pigdm: given the true kernel)")
    parser.add_argument("--steps", type=int, nargs="+", default=[100, 20])
    parser.add_argument("--per-image", type=int, default=4, help="problems per held-out photograph (3 photographs)")
    args = parser.parse_args(argv)
    rows = floor_rows(args.method, args.steps, args.per_image)
    print(f"{args.method}, shipped small64 prior, {3 * args.per_image} problems (64x64, 17x17 kernels, sigma 10/255), "
          f"against fp32 eager with 1 thread on the same seeds")
    print(markdown(rows))


if __name__ == "__main__":
    run_script(main)
