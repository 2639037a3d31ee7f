"""Does a learned prior help? Fast EM ΠGDM against the prior-free Wiener / M-step alternation.

64×64 centre crops of the Figure-4 test images (coffee, rocket, motorcycle: never seen by the
shipped small prior), blurred with seeded camera-shake kernels plus noise; both methods estimate
the kernel blind. Prints mean PSNR and kernel MSE of each (issue 4's acceptance check)::

    python -m studies.priors.prior_check --prior PRIOR.pt [--prior-config small64] [--sigma 10] [--steps 250] [--particles 1]
"""

from __future__ import annotations

import argparse

from fdem.baselines.alternation import wiener_alternation
from fdem.kernel_ops import kernel_mse
from fdem.metrics import psnr
from fdem.priors import load_prior
from fdem.validate import check_sigma
from studies.common import make_problems, run_preset, run_script


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", required=True)
    parser.add_argument("--prior-config", default="small64")
    parser.add_argument("--sigma", type=float, default=10.0, help="255 scale")
    parser.add_argument("--kernel-size", type=int, default=17)
    parser.add_argument("--per-image", type=int, default=4)
    parser.add_argument("--steps", type=int, default=250, help="ΠGDM steps (250: the setting of the README check)")
    parser.add_argument("--weighting", default="official", help="the M-step's α and r² rule: official (the authors' code) or paper")
    parser.add_argument("--particles", type=int, default=1, help="posterior samples per problem (the estimate is their mean)")
    args = parser.parse_args(argv)
    sigma = check_sigma(args.sigma, "--sigma") / 255
    sharp, kernels, y = make_problems(64, args.kernel_size, args.per_image, sigma)
    prior = load_prior(args.prior, config=args.prior_config)
    em = run_preset("fastem-pigdm", prior, y, sigma, steps=args.steps, kernel_size=args.kernel_size, particles=args.particles,
                 weighting=args.weighting, r2_rule=args.weighting)
    alt_image, alt_kernel, alt_seconds = wiener_alternation(y, sigma, kernel_size=args.kernel_size)
    print(f"{len(y)} problems, 64x64, {args.kernel_size}x{args.kernel_size} camera-shake kernels, sigma {args.sigma}/255, "
          f"{args.particles} particle(s), {args.steps} steps, {args.weighting} weighting")
    print("| method | PSNR | kernel MSE | s / image |\n|---|---|---|---|")
    for name, image, kernel, seconds in (("fastem-pigdm", em.image, em.kernel, em.seconds),
                                         ("Wiener + M-step alternation", alt_image, alt_kernel, alt_seconds)):
        print(f"| {name} | {psnr(image, sharp).mean():.2f} | {kernel_mse(kernel, kernels).mean():.2e} | {seconds / len(y):.2f} |")


if __name__ == "__main__":
    run_script(main)
