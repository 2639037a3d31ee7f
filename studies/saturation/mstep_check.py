"""The saturation mask in the M-step alone: kernels fitted from the *sharp* image on the benchmark's
point-light scenes, every pixel as data, the mask of ``fdem/saturation.py`` (a kernel-sized box around
each clipped pixel), and the clipped pixels alone (a box of 1). Isolates the data term from the sampler.

    python -m studies.saturation.mstep_check --images ../shared/data/bsds500/test --count 12
"""

from __future__ import annotations

from studies.common import mstep_alone, mstep_arguments, print_against_first, protocol_samples, run_script


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import kernel_mse
    from fdem.saturation import observed_mask

    args = mstep_arguments(__doc__.splitlines()[0]).parse_args(argv)
    k = args.kernel_size
    samples = protocol_samples(args.images, args.count, [5], args.size, k, lights=4)
    masks = {"every pixel data": (None, "impute"), "mask (kernel box)": (k, "impute"), "clipped pixels only": (1, "impute"),
             "mask (kernel box), left out": (k, "exclude"), "clipped pixels only, left out": (1, "exclude")}
    errors: dict[str, list[float]] = {name: [] for name in masks}
    for sample in samples:
        y, x, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
        for name, (reach, missing) in masks.items():
            seen = None if reach is None else observed_mask(y, 0.98, reach)
            kernel = mstep_alone(y, x, seen, k, args.rounds, missing=missing)
            errors[name].append(float(kernel_mse(kernel, truth)[0]))
    print_against_first("data term", errors)


if __name__ == "__main__":
    run_script(main)
