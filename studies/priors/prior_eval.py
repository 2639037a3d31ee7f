"""Compare natural-image priors on crops of a photo folder: non-blind ΠGDM with the true kernel
(how good the prior is) and blind Fast EM ΠGDM (how well the blind coupling uses it), next to
the blurry input and the prior-free Wiener / M-step alternation::

    python -m studies.priors.prior_eval --images ../shared/data/bsds500/test --priors small64,bsds64 \\
        [--count 8] [--size 64] [--scale 0.5] [--kernel-size 17] [--sigma 5] [--steps 100]

Crop j is the centre ``size × size`` window of image j (sorted) resized by ``scale``; kernels are
seeded camera-shake, noise seeded; every method sees the same problems and seeds.
"""

from __future__ import annotations

import argparse


from fdem.baselines.alternation import wiener_alternation
from fdem.kernel_ops import dirac, kernel_mse
from fdem.metrics import psnr
from fdem.priors import load_prior
from fdem.synthetic import blur_problems, camera_shake
from fdem.validate import check_float, check_int, check_sigma255
from studies.common import add_crop_arguments, crops, run_preset, run_script


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of photographs")
    parser.add_argument("--priors", default="small64", help="comma-separated prior files or shipped names")
    add_crop_arguments(parser, count=8, size=64, kernel_size=17)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args(argv)
    sigma = check_sigma255(args.sigma)
    count, size = check_int(args.count, "--count"), check_int(args.size, "--size", 8)
    x = crops(args.images, count, size, check_float(args.scale, "--scale", 0.05, 1.0))
    x, k, y = blur_problems(x, camera_shake(len(x), check_int(args.kernel_size, "--kernel-size", 3), args.seed),
                            sigma, noise_seed=args.seed)
    print(f"{len(x)} crops of {args.images} ({size}², scale {args.scale}), {args.kernel_size}² camera-shake kernels, "
          f"σ = {args.sigma}/255, {args.steps} steps, seed {args.seed}\n")
    print("| method | prior | PSNR | kernel MSE | s / image |\n|---|---|---|---|---|")

    def row(name: str, prior: str, image, kernel, seconds: float) -> None:
        mse = f"{kernel_mse(kernel, k).mean():.2e}" if kernel is not None else "–"
        print(f"| {name} | {prior} | {psnr(image.clamp(0, 1), x).mean():.2f} | {mse} | {seconds / len(x):.2f} |", flush=True)

    row("blurry input (Dirac kernel)", "–", y, dirac(len(x), args.kernel_size), 0.0)
    image, kernel, seconds = wiener_alternation(y, sigma, kernel_size=args.kernel_size)
    row("Wiener + M-step alternation", "–", image, kernel, seconds)
    for name in args.priors.split(","):
        prior = load_prior(name)
        for method in ("pigdm", "fastem-pigdm"):
            out = run_preset(method, prior, y, sigma, kernel=k if method == "pigdm" else None, kernel_size=args.kernel_size,
                          steps=check_int(args.steps, "--steps", 2), seed=args.seed)
            row(method + (" (true kernel)" if method == "pigdm" else ""), name, out.image, out.kernel, out.seconds)


if __name__ == "__main__":
    run_script(main)
