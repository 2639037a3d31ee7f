"""Deblur a tensor from Python with a preset: the shipped prior, Fast EM ΠGDM, a synthetic blur.

    python examples/deblur_tensor.py [--preset few-step] [--steps N] [--size 64]

A ``(B, 3, H, W)`` tensor in [0, 1] goes in; the restored image and the estimated kernel come out.
``build_restorer`` resolves the preset once (``fdem presets`` lists them) and overrides single fields.
"""

import argparse

from fdem.imageio import default_images
from fdem.kernel_ops import kernel_mse
from fdem.metrics import psnr
from fdem.restorers import build_restorer
from fdem.synthetic import blur_problems, camera_shake


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="few-step", help="a preset name (fdem presets)")
    parser.add_argument("--steps", type=int, default=None, help="network calls (default: the preset's)")
    parser.add_argument("--size", type=int, default=64, help="side of the centre crop")
    args = parser.parse_args()

    sharp = default_images(args.size)[0][1][None]  # (1, 3, H, W) in [0, 1]: a built-in photograph
    kernel = camera_shake(1, 9, seed=1)  # (1, 1, 9, 9), sums to 1
    sigma = 5 / 255
    _, _, y = blur_problems(sharp, kernel, sigma)  # y = k ⊛ x + σn (circular blur)

    steps = {} if args.steps is None else {"steps": args.steps}  # a field left out keeps the preset's value
    restorer = build_restorer("fastem-pigdm", "cpu", preset=args.preset, kernel_size=9, **steps)
    print("resolved options:", restorer.params())
    result = restorer.restore(y, sigma, seed=0)
    print(f"blurry {psnr(y, sharp).item():.2f} dB -> restored {psnr(result.image, sharp).item():.2f} dB, "
          f"kernel MSE {kernel_mse(result.kernel, kernel).item():.3g}, {result.seconds:.1f} s")


if __name__ == "__main__":
    main()
