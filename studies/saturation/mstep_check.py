"""The saturation mask in the M-step alone: kernels fitted from the *sharp* image on the benchmark's
point-light scenes, every pixel as data, the mask of ``fdem/saturation.py`` (a kernel-sized box around
each clipped pixel), and the clipped pixels alone (a box of 1). Isolates the data term from the sampler.

    python -m studies.saturation.mstep_check --images ../shared/data/bsds500/test --count 12
"""

from __future__ import annotations

import argparse

import torch

from studies.common import protocol_samples, run_script


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import dirac, kernel_mse
    from fdem.mstep import MStepConfig
    from fdem.saturation import observed_mask
    from fdem.verdict import edge_pad, margin_problem

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--rounds", type=int, default=8, help="margin refills and M-steps")
    args = p.parse_args(argv)
    k = args.kernel_size
    samples = protocol_samples(args.images, args.count, [5], args.size, k, lights=4)
    mstep = MStepConfig(kernel_size=k, recenter="bilinear")
    sigma = torch.tensor([5 / 255])
    masks = {"every pixel data": None, "mask (kernel box)": k, "clipped pixels only": 1}
    errors: dict[str, list[float]] = {name: [] for name in masks}
    for sample in samples:
        y, x, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
        for name, reach in masks.items():
            seen = None if reach is None else observed_mask(y, 0.98, reach)
            problem, particles, kernel = margin_problem(y, sigma, k, seen), edge_pad(x, k // 2)[:, None], dirac(1, k)
            for _ in range(args.rounds):
                problem.impute(particles, kernel)
                kernel = mstep.update(problem, particles, init=kernel, weighting="official", r2=0.0, recenter=True)
            errors[name].append(float(kernel_mse(kernel, truth)[0]))
    print("| data term | mean kernel MSE | median | against every pixel |")
    print("|---|---|---|---|")
    base = torch.tensor(errors["every pixel data"]).mean()
    for name, values in errors.items():
        v = torch.tensor(values)
        print(f"| {name} | {v.mean():.3g} | {v.median():.3g} | {float(v.mean() / base):.2f}× |")


if __name__ == "__main__":
    run_script(main)
