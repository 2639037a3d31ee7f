"""How much could a better kernel start buy the ``photo`` preset, and what limits its kernel instead?

Issue 35 lists kernel starts to try (ℓ0's, coarse-to-fine, one learned from the blurry image). None can
do better than the true kernel itself, so this runs Fast EM ΠGDM under ``photo`` (the better of two
25-step DDIM chains from T/2, the imputed margin, κ = 4) on the deblur check's crops (scene blur,
seeded 33×33 camera-shake kernels, σ = 5/255) twice with the same seeds: from its own start (the
alternation's kernel) and from the **true** kernel; the M-step runs from the first step either way.
With ``--mstep``, two more kernels per crop: the M-step alone (:func:`studies.common.mstep_alone`,
margin refills and M-steps from a Dirac) given the sharp image, and given the image that ΠGDM
restores with the true kernel (the same preset, non-blind): a realistic sample at the right kernel.
Printed per crop and in the mean: the blurry input's PSNR, PSNR and kernel MSE of both starts, then
the two M-step-alone kernel errors.

    python -m studies.fastem.oracle_start --images ../shared/data/bsds500/val --count 12 [--mstep]
"""

from __future__ import annotations

import argparse

import torch

from fdem.kernel_ops import kernel_mse
from fdem.metrics import psnr
from studies.common import mstep_alone, protocol_samples, run_script


def restore_from(restorer, y, sigma: float, start, seed: int):
    """The preset's blind run on ``y (1, C, H, W)`` from ``start`` (None: the preset's own kernel start)."""
    return restorer._run(restorer.spec, y, sigma, start, seed, None)  # restore() takes no start for a blind method


def build(method: str, args) -> object:
    """``method`` under ``args.preset`` (the shipped networks) with the flags' kernel size and step count."""
    from fdem.restorers import build_restorer

    options = {"preset": args.preset, "kernel_size": args.kernel_size}
    if args.steps is not None:
        options["steps"] = args.steps
    return build_restorer(method, "cpu", **options)


def crop_row(blind, sighted, sample: dict, index: int, rounds: int) -> list[float]:
    """One crop's numbers: input PSNR, (PSNR, kernel MSE) from the preset's start and from the truth, and
    with ``sighted`` (the non-blind restorer) the M-step-alone kernel errors on the sharp and on ΠGDM's image."""
    y, sharp, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
    sigma = float(sample["sigma255"]) / 255
    row = [float(psnr(y, sharp))]
    for start in (None, truth):
        result = restore_from(blind, y, sigma, start, seed=index)
        row += [float(psnr(result.image.clamp(0, 1), sharp)), float(kernel_mse(result.kernel, truth))]
    if sighted is not None:
        restored = sighted.restore(y, sigma, kernel=truth, seed=index).image.clamp(0, 1)
        for image in (sharp, restored):
            row.append(float(kernel_mse(mstep_alone(y, image, None, truth.shape[-1], rounds), truth)))
    return row


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=12)
    p.add_argument("--preset", default="photo")
    p.add_argument("--mstep", action="store_true", help="also the M-step alone on the sharp image and on ΠGDM's")
    p.add_argument("--rounds", type=int, default=8, help="margin refills and M-steps of the M-step alone")
    p.add_argument("--steps", type=int, help="override the preset's step count (tests)")
    p.add_argument("--kernel-size", type=int, default=33)
    args = p.parse_args(argv)
    blind, sighted = build("fastem-pigdm", args), build("pigdm", args) if args.mstep else None
    extra = " M-step alone, sharp image: kernel MSE | on ΠGDM's image (true kernel) |" if args.mstep else ""
    print("| crop | blurry input | own start: PSNR | kernel MSE | true kernel start: PSNR | kernel MSE |" + extra)
    print("|---" * (6 + 2 * args.mstep) + "|")
    rows = []
    for index, sample in enumerate(protocol_samples(args.images, args.count, [5], kernel_size=args.kernel_size)):
        rows.append(crop_row(blind, sighted, sample, index, args.rounds))
        print(f"| {index} | " + " | ".join(_cell(v, j) for j, v in enumerate(rows[-1])) + " |", flush=True)
    mean = torch.tensor(rows).mean(dim=0).tolist()
    print("| mean | " + " | ".join(_cell(v, j) for j, v in enumerate(mean)) + " |")


def _cell(value: float, column: int) -> str:
    """PSNR columns (0, 1, 3) with two decimals, kernel errors with three digits."""
    return f"{value:.2f}" if column in (0, 1, 3) else f"{value:.3g}"


if __name__ == "__main__":
    run_script(main)
