"""True against estimated noise level (:func:`fdem.noise_level.estimate_noise`) on blurred photographs.

Every crop of ``--images`` is blurred as a camera blurs (scene blur, camera-shake kernels, the
``deblur_check`` protocol's data module), noised at each σ, stored as an 8-bit PNG (quantised) or a
JPEG of ``--jpeg`` quality, and estimated. Prints a markdown table: per σ and format the median and
the 10th/90th percentiles of the estimate, and the median relative error.

    python -m studies.noise_level.estimate_table --images ../shared/data/bsds500/test --count 24
"""

from __future__ import annotations

import argparse
import io

import numpy as np
import torch

from studies.common import protocol_samples, run_script

SIGMAS = (1, 2, 5, 10, 20)


def encoded(y: torch.Tensor, quality: int | None) -> torch.Tensor:
    """``y (3, H, W)`` stored as 8 bits, and through a JPEG of ``quality`` when given, read back in [0, 1]."""
    from PIL import Image

    pixels = (y.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    if quality is None:
        return torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return torch.from_numpy(np.asarray(Image.open(buffer).convert("RGB")).copy()).permute(2, 0, 1).float() / 255


def main(argv: list[str] | None = None) -> None:
    from fdem.noise_level import estimate_noise

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=24)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--jpeg", type=int, default=90, help="JPEG quality of the compressed rows")
    args = p.parse_args(argv)
    found: dict[tuple[str, float], list[float]] = {}
    for sample in protocol_samples(args.images, args.count, SIGMAS, args.size, args.kernel_size):
        sigma255, y = sample["sigma255"], sample["y"]
        for fmt, quality in (("PNG", None), (f"JPEG q{args.jpeg}", args.jpeg)):
            estimate = float(estimate_noise(encoded(y, quality)[None])[0]) * 255
            found.setdefault((fmt, sigma255), []).append(estimate)
    found = dict(sorted(found.items()))
    print("| format | true σ | median estimate | 10–90 % | median relative error |")
    print("|---|---|---|---|---|")
    for (fmt, sigma255), values in found.items():
        v = np.array(values)
        error = np.median(np.abs(v - sigma255) / sigma255)
        print(f"| {fmt} | {sigma255:g} | {np.median(v):.2f} | {np.percentile(v, 10):.2f}–{np.percentile(v, 90):.2f} | {100 * error:.0f} % |")


if __name__ == "__main__":
    run_script(main)
