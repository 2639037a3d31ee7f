"""Borders of a real photograph: the circular model against a reflected or smooth margin (issue 16)::

    python -m studies.borders.border_check --image ../shared/data/bsds500/test/100007.jpg --out border.png

A photograph is not periodic: a camera's blur mixes in the scene beyond the frame. To mimic that,
the whole photo is blurred (a seeded 33×33 camera-shake kernel, σ = 5/255) and a window at least a
kernel radius inside it is kept, so its blur owes nothing to the opposite edge. fastem-pigdm with
the shipped prior restores the window four times: ``border="circular"`` (the FFT model wraps the
window around), ``"reflect"`` (a mirrored margin of the kernel's radius, cropped away) and
``"smooth"`` (the margin smoothly periodised, :func:`fdem.padding.smooth_pad`) and ``"impute"`` (that
margin as a start, then missing data refilled by the model every step, :meth:`fdem.problem.BlurProblem.impute`).
The PSNR over the 16-pixel frame along the borders and over the interior shows where the
wrap-around hurts; the picture shows blurry, the restorations and sharp (``--borders`` picks some).
"""

from __future__ import annotations

import argparse

import torch

from fdem.benchmarks.speed import parse_list
from fdem.errors import InputError
from fdem.imageio import load_image
from fdem.metrics import psnr
from fdem.physics import add_noise, blur
from fdem.presets import BORDERS
from fdem.sampling.diffusion_restorer import DiffusionRestorer
from fdem.synthetic import camera_shake
from fdem.validate import check_int
from studies.common import STUDY_PRESET, run_script

KERNEL, SIGMA, FRAME = 33, 5 / 255, 16


def frame_mask(height: int, width: int, frame: int = FRAME) -> torch.Tensor:
    """``(H, W)`` True on the ``frame`` pixels along the four borders."""
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[frame:-frame, frame:-frame] = False
    return mask


def masked_psnr(x: torch.Tensor, ref: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR of ``x`` against ``ref`` (``(1, C, H, W)`` in [0, 1]) over the pixels of ``mask``."""
    mse = (x - ref).square().mean(dim=1)[0][mask].mean()
    return float(-10 * torch.log10(mse))


def window_problem(photo: torch.Tensor, height: int, width: int, seed: int):
    """``(x, y, k)``: a centred ``height × width`` window of ``photo`` blurred as part of the whole photo."""
    k = camera_shake(1, KERNEL, seed)
    full = add_noise(blur(photo[None], k), SIGMA, generator=torch.Generator().manual_seed(seed))
    top, left = (photo.shape[1] - height) // 2, (photo.shape[2] - width) // 2
    if min(top, left) < KERNEL // 2:
        raise InputError(f"the photo must exceed the window by a kernel radius on every side, got {tuple(photo.shape[1:])}")
    window = (slice(None), slice(None), slice(top, top + height), slice(left, left + width))
    return photo[None][window], full[window], k


def save_panels(panels: list[tuple[str, torch.Tensor]], path: str) -> None:
    """The images side by side with their titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.0))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image[0].permute(1, 2, 0).clamp(0, 1).numpy())
        ax.set_title(title, fontsize=8)
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="a photograph larger than the window by 16 px per side")
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--borders", default=",".join(BORDERS), help=f"comma-separated, of {', '.join(BORDERS)} (default: all)")
    parser.add_argument("--steps", type=int, default=None, help="network calls (default: the preset's, 100)")
    parser.add_argument("--out", default="border_check.png")
    args = parser.parse_args(argv)
    steps = {} if args.steps is None else {"steps": args.steps}
    borders = parse_list(args.borders, "--borders")
    if set(borders) - set(BORDERS):
        raise InputError(f"--borders must list some of {', '.join(BORDERS)}, got {args.borders!r}")
    torch.set_num_threads(1)
    x, y, k = window_problem(load_image(args.image), check_int(args.height, "--height", 64),
                             check_int(args.width, "--width", 64), args.seed)
    mask = frame_mask(*x.shape[-2:])
    print("| border | PSNR | PSNR on the 16-px frame | PSNR inside |\n|---|---|---|---|")
    print(f"| blurry input | {psnr(y.clamp(0, 1), x).item():.2f} | {masked_psnr(y.clamp(0, 1), x, mask):.2f} | "
          f"{masked_psnr(y.clamp(0, 1), x, ~mask):.2f} |")
    panels = [("blurry", y)]
    for border in borders:
        out = DiffusionRestorer.from_options("fastem-pigdm", preset=STUDY_PRESET, kernel_size=KERNEL,
                                             border=border, **steps).restore(y, SIGMA, seed=0).image
        print(f"| {border} | {psnr(out, x).item():.2f} | {masked_psnr(out, x, mask):.2f} | "
              f"{masked_psnr(out, x, ~mask):.2f} |", flush=True)
        panels.append((f"fastem-pigdm, border={border}", out))
    save_panels(panels + [("sharp", x)], args.out)
    print(f"\npicture: {args.out}")


if __name__ == "__main__":
    run_script(main)
