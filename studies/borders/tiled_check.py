"""Does tiling keep Fast EM's kernel estimate? One kernel for a whole 512×384 photo against its
256×256 centre crop (issue 16)::

    python -m studies.borders.tiled_check [--steps N --step-rule ddim] [--count 3]

Each held-out built-in photograph (never seen by the shipped priors) is cropped to 384×512 and
blurred circularly with a seeded 33×33 camera-shake kernel (σ = 5/255); its 256×256 centre is
blurred alone with the same kernel and noise seed, as its own circular problem. fastem-pigdm with
the shipped prior restores both: the photo on tiles (the default 256-pixel tiles, a quarter of
overlap), the crop untiled (it is one tile). A larger image holds more evidence about the kernel,
so the tiled estimate should be at least as close to the truth.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import torch

from fdem.imageio import HELD_OUT_IMAGES, builtin_image, center_crop
from fdem.kernel_ops import kernel_mse
from fdem.metrics import psnr
from fdem.sampling.diffusion_restorer import DiffusionRestorer
from fdem.synthetic import blur_problems, camera_shake
from fdem.validate import check_int
from studies.common import STUDY_PRESET, run_script

SIZE, CROP, KERNEL, SIGMA = (384, 512), 256, 33, 5 / 255


@dataclass(frozen=True)
class Row:
    """One photo: kernel MSE and PSNR of the tiled whole and of the untiled centre crop, seconds of each."""

    name: str
    tiled_kmse: float
    crop_kmse: float
    tiled_psnr: float
    crop_psnr: float
    tiled_seconds: float
    crop_seconds: float


def held_out_photos(count: int) -> list[tuple[str, torch.Tensor]]:
    """The first ``count`` held-out built-in photographs, centre-cropped to :data:`SIZE` (3, H, W)."""
    return [(name, center_crop(builtin_image(name), SIZE, upscale=True).contiguous()) for name in HELD_OUT_IMAGES[:count]]


def restore(restorer: DiffusionRestorer, y: torch.Tensor, seed: int):
    """``(kernel, image, seconds)`` of one restoration."""
    start = time.perf_counter()
    out = restorer.restore(y, SIGMA, seed=seed)
    return out.kernel, out.image, time.perf_counter() - start


def compare(count: int = 3, steps: int | None = None, step_rule: str = "ddpm", seed: int = 0) -> list[Row]:
    """One :class:`Row` per photo (module docstring)."""
    restorer = DiffusionRestorer.from_options("fastem-pigdm", preset=STUDY_PRESET, kernel_size=KERNEL, steps=steps,
                                              step_rule=step_rule, tiled=True)
    rows = []
    for j, (name, photo) in enumerate(held_out_photos(count)):
        kernel = camera_shake(1, KERNEL, seed + j)
        x, k, y = blur_problems(photo[None], kernel, SIGMA, noise_seed=seed + j)
        xc, _, yc = blur_problems(center_crop(photo, CROP)[None].contiguous(), kernel, SIGMA, noise_seed=seed + j)
        k_tiled, image, t_tiled = restore(restorer, y, seed)
        k_crop, crop, t_crop = restore(restorer, yc, seed)
        rows.append(Row(name, kernel_mse(k_tiled, k).item(), kernel_mse(k_crop, k).item(),
                        psnr(image.clamp(0, 1), x).item(), psnr(crop.clamp(0, 1), xc).item(), t_tiled, t_crop))
        print(markdown([rows[-1]]).splitlines()[-1], flush=True)
    return rows


def markdown(rows: list[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| photo | kernel MSE, 512×384 tiled | kernel MSE, 256² crop | PSNR tiled | PSNR crop | s tiled | s crop |",
             "|---|---|---|---|---|---|---|"]
    lines += [f"| {r.name} | {r.tiled_kmse:.2e} | {r.crop_kmse:.2e} | {r.tiled_psnr:.2f} | {r.crop_psnr:.2f} | "
              f"{r.tiled_seconds:.0f} | {r.crop_seconds:.0f} |" for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3, help="photos, 1 to 3")
    parser.add_argument("--steps", type=int, help="sampler steps (default: the method's)")
    parser.add_argument("--step-rule", default="ddpm", help="ddpm or ddim")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(check_int(args.threads, "--threads", 1))
    print(markdown([]))
    rows = compare(check_int(args.count, "--count", 1, len(HELD_OUT_IMAGES)), args.steps, args.step_rule)
    mean = [sum(getattr(r, f) for r in rows) / len(rows) for f in ("tiled_kmse", "crop_kmse")]
    print(f"\nmean kernel MSE: tiled 512x384 {mean[0]:.2e}, 256x256 crop {mean[1]:.2e}")


if __name__ == "__main__":
    run_script(main)
