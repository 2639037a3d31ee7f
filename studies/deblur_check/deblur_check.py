"""Out of the box: does ``fdem deblur`` with its defaults improve on the blurry input? (issue 14)::

    python -m studies.deblur_check.deblur_check --images ../shared/data/bsds500/test --count 24 --scale 0.5
    python -m studies.deblur_check.deblur_check --images ../shared/data/ffhq_dev --count 9 --scale 0.5

The first ``count`` photographs of a folder are resized by ``scale`` and centre-cropped to
``size``² PNGs; a seeded camera-shake bank of ``kernel-size``² kernels (the paper's kernel-to-image
ratio, 64/256, at the default 33/128) is written by ``fdem kernels`` and applied by ``fdem blur``
(σ = ``sigma``/255, circular blur; ``--blur scene`` blurs a larger crop and keeps the frame, as a
camera does); then ``fdem deblur`` runs on the ``.npy`` observations with
nothing but ``--sigma`` (and ``--true-kernel``, which a blind method only uses to print the kernel
error; ``--deblur-args`` adds flags to compare). Prints one row per image and the means: PSNR of the blurry input, of the restored image,
kernel MSE of the estimate and of a Dirac.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fdem.imageio import list_images, load_image, save_image
from fdem.kernel_ops import dirac, kernel_mse
from fdem.metrics import psnr
from fdem.validate import check_float, check_int
from studies.common import add_crop_arguments, crops, run_script


def fdem(args: list[str]) -> None:
    """Run ``fdem ARGS`` in a fresh process, as a user would (this module never imports the CLI)."""
    subprocess.run([sys.executable, "-m", "fdem.cli", *args], check=True)


BLURS = ("circular", "scene")


def run(images: str, count: int, size: int, scale: float, kernel_size: int, sigma255: float, work: Path,
        extra: list[str] = (), blur: str = "circular") -> list[dict]:
    """One dict per image: ``name``, ``blurry`` and ``restored`` PSNR, ``kmse`` and ``dirac`` kernel MSE.

    ``blur="circular"`` blurs the ``size``² crop circularly; ``"scene"`` blurs a crop larger by the
    kernel's radius on every side and keeps its centre, as a camera mixes in the scene beyond the frame.
    """
    names = [p.stem for p in list_images(images)[:count]]
    radius = kernel_size // 2 if blur == "scene" else 0
    scenes = crops(images, count, size + 2 * radius, scale)
    (work / "scene").mkdir(parents=True, exist_ok=True)
    for name, scene in zip(names, scenes):
        save_image(work / "scene" / f"{name}.png", scene)
        save_image(work / f"{name}.png", scene[:, radius:radius + size, radius:radius + size])
    fdem(["kernels", "--generator", "camera-shake", "--size", str(kernel_size), "--count", str(len(names)),
          "--seed", "11", "--out", str(work / "bank.npz")])
    fdem(["blur", *[str(work / "scene" / f"{n}.png") for n in names], "--kernels", str(work / "bank.npz"),
          "--sigma", str(sigma255), "--seed", "11", "--out", str(work / "blurry")])
    for name in names:  # the frame the camera kept
        observed = work / "blurry" / f"{name}_blurry.npy"
        np.save(observed, np.load(observed)[:, radius:radius + size, radius:radius + size])
    fdem(["deblur", *[str(work / "blurry" / f"{n}_blurry.npy") for n in names], "--sigma", str(sigma255),
          "--true-kernel", str(work / "bank.npz"), "--out", str(work / "restored"), *extra])
    rows = []
    for name in names:
        x = load_image(work / f"{name}.png")[None]
        y = torch.from_numpy(np.load(work / "blurry" / f"{name}_blurry.npy"))[None]
        restored = load_image(work / "restored" / f"{name}_blurry_restored.png")[None]
        truth = torch.from_numpy(np.load(work / "blurry" / f"{name}_kernel.npy"))[None, None]
        estimate = torch.from_numpy(np.load(work / "restored" / f"{name}_blurry_kernel.npy"))[None, None]
        rows.append({"name": name, "blurry": psnr(y.clamp(0, 1), x).item(), "restored": psnr(restored, x).item(),
                     "kmse": kernel_mse(estimate, truth).item(), "dirac": kernel_mse(dirac(1, kernel_size), truth).item()})
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder of sharp photographs")
    add_crop_arguments(parser, count=24, size=128, kernel_size=33)
    parser.add_argument("--work", help="keep the files here (default: a temporary folder)")
    parser.add_argument("--blur", default="circular", choices=BLURS, help="how the observations are made: "
                        "circular blur of the crop (default), or blur of a larger scene cropped to the frame (a photograph)")
    parser.add_argument("--deblur-args", default="", help="extra `fdem deblur` flags, e.g. \"--border circular\" (default: none)")
    args = parser.parse_args(argv)
    count, size = check_int(args.count, "--count", 1), check_int(args.size, "--size", 8)
    scale, ks = check_float(args.scale, "--scale", 0.05, 1.0), check_int(args.kernel_size, "--kernel-size", 3)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        rows = run(args.images, count, size, scale, ks, args.sigma, work, args.deblur_args.split(), args.blur)
    print("\n| image | blurry PSNR | restored PSNR | kernel MSE | Dirac kernel MSE |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['blurry']:.2f} | {r['restored']:.2f} | {r['kmse']:.2e} | {r['dirac']:.2e} |")
    mean = {k: sum(r[k] for r in rows) / len(rows) for k in ("blurry", "restored", "kmse", "dirac")}
    print(f"| **mean of {len(rows)}** | {mean['blurry']:.2f} | {mean['restored']:.2f} | {mean['kmse']:.2e} | "
          f"{mean['dirac']:.2e} |")
    print(f"\ngain over the blurry input {mean['restored'] - mean['blurry']:+.2f} dB; "
          f"kernel MSE {mean['kmse'] / mean['dirac']:.3f} x a Dirac's")


if __name__ == "__main__":
    run_script(main)
