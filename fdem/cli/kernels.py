"""``fdem kernels``, ``fdem blur``, ``fdem estimate-kernel``: kernel banks, synthetic observations,
and the M-step alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdem.cli.args import add_float, add_int, add_kernel_size, add_seed, add_sigma, key_value, output_file
from fdem.errors import InputError


def grid_arg(text: str) -> tuple[int, int]:
    """``--grid GxH``, checked."""
    from fdem.kernel_field import parse_grid

    return parse_grid(text, "--grid")


def cmd_kernels(args: argparse.Namespace) -> None:
    """Write a seeded kernel bank (and optionally a preview grid)."""
    from fdem.kernels_gen import make_generator, save_bank, save_preview

    if args.grid is not None:
        return write_fields(args)
    gen = make_generator(args.generator, args.size, **dict(args.param or []))
    kernels = gen.sample(args.count, seed=args.seed)
    save_bank(args.out, kernels, generator=gen, seed=args.seed)
    if args.preview:
        save_preview(kernels[:64], args.preview)
    print(f"wrote {args.count} {args.generator} kernels of {args.size}x{args.size} to {args.out}")
    if args.stats:
        print(stats_table(kernels))


def write_fields(args: argparse.Namespace) -> None:
    """``fdem kernels --grid GxH``: a bank of camera-shake fields with roll (``kernels_gen/field.py``) and
    a preview of the first four, each drawn as its grid."""
    from fdem.kernels_gen import save_preview
    from fdem.kernels_gen.field import CameraShakeField, save_fields

    if args.generator != "camera-shake":
        raise InputError(f"--grid: kernel fields come from the camera-shake generator (with roll), not {args.generator}")
    frame = args.frame or 256
    gen = CameraShakeField(args.size, args.grid, (frame, frame), **dict(args.param or []))
    fields = gen.sample(args.count, seed=args.seed)
    save_fields(args.out, fields, gen.grid, gen.params(), args.seed)
    if args.preview:
        save_preview(fields[:4].flatten(0, 1), args.preview, ncol=gen.grid[1])
    print(f"wrote {args.count} camera-shake fields of {gen.grid[0]}x{gen.grid[1]} kernels of {args.size}x{args.size} "
          f"(frame {frame}x{frame}) to {args.out}")


def stats_table(kernels) -> str:
    """Markdown min / median / max of :func:`fdem.kernels_gen.kernel_stats` over a bank."""
    import pandas as pd

    from fdem.kernels_gen import kernel_stats

    stats = pd.DataFrame([kernel_stats(k) for k in kernels]).drop(columns=["com_row", "com_col"])
    lines = ["| statistic | min | median | max |", "|---|---|---|---|"]
    for name, col in stats.items():
        lines.append(f"| {name} | {col.min():.3g} | {col.median():.3g} | {col.max():.3g} |")
    return "\n".join(lines)


def cmd_blur(args: argparse.Namespace) -> None:
    """Make blurry, noisy observations: image i gets kernel i (cyclically) of a bank."""
    import numpy as np
    import torch

    from fdem.imageio import load_image, save_image
    from fdem.io_utils import OutputFolder, atomic_path
    from fdem.kernels_gen import load_bank
    from fdem.physics import add_noise, blur

    sigma = args.sigma / 255  # checked by the parser
    folder = OutputFolder(args.out)  # checked now, made at the first write
    if (args.kernels is None) == (args.fields is None):
        raise InputError("give exactly one of --kernels (a bank) and --fields (kernel fields)")
    if args.fields is not None:
        return blur_with_fields(args, folder, sigma)
    kernels = load_bank(args.kernels)
    images = [(Path(p), load_image(p)) for p in args.images]  # everything is read before anything is written
    for path, img in images:
        if kernels.shape[-1] > min(img.shape[-2:]):
            raise InputError(f"kernels of {args.kernels} ({kernels.shape[-1]}x{kernels.shape[-1]}) are larger than image {path} {tuple(img.shape[-2:])}")
    g = torch.Generator().manual_seed(args.seed)
    files: list[Path] = []  # the outputs of the image being written
    try:
        out = folder.folder()
        for i, (path, img) in enumerate(images):
            files = [out / f"{path.stem}_{name}" for name in ("blurry.npy", "kernel.npy", "blurry.png")]
            k = kernels[i % len(kernels)][None]
            y = add_noise(blur(img[None], k), sigma, generator=g)[0]
            for file, array in zip(files, (y, k[0, 0])):
                with atomic_path(file) as tmp:
                    np.save(tmp, array.numpy())
            save_image(files[2], y)
    except BaseException:
        folder.discard(files)  # the unfinished image's files, then the folder if it is empty
        raise
    print(f"wrote {len(images)} observations to {out}")


def blur_with_fields(args: argparse.Namespace, folder, sigma: float) -> None:
    """``fdem blur --fields``: image i through field i (cyclically), as a camera blurs the scene: the image
    is the scene, the observation its centre less the kernel's radius on every side, the field's grid laid on it."""
    import numpy as np
    import torch

    from fdem.imageio import load_image, save_image
    from fdem.io_utils import atomic_path
    from fdem.kernel_field import scene_field_blur
    from fdem.kernels_gen.field import load_fields
    from fdem.physics import add_noise

    fields = load_fields(args.fields)
    grid, size = tuple(fields.shape[1:3]), fields.shape[-1]
    margin = size // 2
    images = [(Path(p), load_image(p)) for p in args.images]
    for path, img in images:
        if min(img.shape[-2:]) <= 2 * margin + size:
            raise InputError(f"image {path} {tuple(img.shape[-2:])} is too small for fields of {size}x{size} kernels "
                             f"(it must hold the frame and {margin} px of scene on every side)")
    g = torch.Generator().manual_seed(args.seed)
    files: list[Path] = []
    try:
        out = folder.folder()
        for i, (path, img) in enumerate(images):
            files = [out / f"{path.stem}_{name}" for name in ("blurry.npy", "field.npy", "blurry.png")]
            field = fields[i % len(fields)]
            frame = (img.shape[-2] - 2 * margin, img.shape[-1] - 2 * margin)
            blurred = scene_field_blur(img[None], field.flatten(0, 1)[None], grid, ((margin, margin), frame))
            blurred = blurred[..., margin:-margin, margin:-margin]
            y = add_noise(blurred, sigma, generator=g)[0]
            for file, array in zip(files, (y, field)):
                with atomic_path(file) as tmp:
                    np.save(tmp, array.numpy())
            save_image(files[2], y)
    except BaseException:
        folder.discard(files)
        raise
    print(f"wrote {len(images)} observations (scene blur by {grid[0]}x{grid[1]} fields) to {out}")


def load_observation(path: str):
    """A blurry image: ``.npy`` (float, unclipped, as ``fdem blur`` writes) or any image file."""
    from fdem.imageio import load_image, load_npy_image

    return load_npy_image(path) if path.endswith(".npy") else load_image(path)


def cmd_estimate_kernel(args: argparse.Namespace) -> None:
    """The M-step alone: estimate the kernel from a sharp and a blurry image."""
    import numpy as np

    from fdem.imageio import load_image
    from fdem.io_utils import atomic_path
    from fdem.kernels_gen import save_preview
    from fdem.mstep import estimate_kernel

    sigma = args.sigma / 255  # checked by the parser
    sharp, blurry = load_image(args.sharp), load_observation(args.blurry)
    if sharp.shape != blurry.shape:
        raise InputError(f"--sharp {args.sharp} {tuple(sharp.shape)} and --blurry {args.blurry} {tuple(blurry.shape)} differ in size")
    k = estimate_kernel(blurry[None], sharp[None], sigma, args.kernel_size, reg=args.reg, lam=args.lam, iters=args.iters)
    with atomic_path(args.out) as tmp:
        np.save(tmp, k[0, 0].numpy())
    save_preview(k, Path(args.out).with_suffix(".png"), ncol=1)
    print(f"wrote {args.out} and {Path(args.out).with_suffix('.png')}")


def add_parsers(sub) -> None:
    """Add ``kernels``, ``blur`` and ``estimate-kernel`` to an ``add_subparsers()`` object."""
    p = sub.add_parser("kernels", help="write a seeded kernel bank (.npz)")
    p.add_argument("--generator", default="camera-shake", help="kernel generator: camera-shake, motion, trajectory or gaussian")
    add_kernel_size(p, "--size", default=33)
    add_int(p, "--count", minimum=1, maximum=100_000, default=64, help="number of kernels, in [1, 100000]")
    add_seed(p, "--seed", default=0, help="seed: kernel i depends on (seed, i) only")
    p.add_argument("--param", type=key_value, action="append", metavar="KEY=VALUE", help="generator parameter (repeatable)")
    p.add_argument("--out", required=True, type=output_file(".npz"), help="kernel bank .npz")
    p.add_argument("--preview", type=output_file(".png"), help="PNG grid of (up to 64 of) the kernels")
    p.add_argument("--stats", action="store_true", help="print min/median/max shape statistics of the bank")
    p.add_argument("--grid", type=grid_arg, help="write kernel fields instead: camera shake with roll seen on a GxH grid "
                   "(e.g. 3x3; kernels_gen/field.py); --param roll_px=... sets the corner's travel")
    add_int(p, "--frame", minimum=8, maximum=16384, help="with --grid: the frame's side in px the roll is measured on (default 256)")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("blur", help="blur (and add noise to) images with kernels from a bank")
    p.add_argument("images", nargs="+", help="sharp images (PNG/JPEG/TIFF...)")
    p.add_argument("--kernels", help=".npz bank, PNG folder or MATLAB .mat")
    p.add_argument("--fields", help="kernel fields (.npz of `fdem kernels --grid`, or a (G, H, k, k) .npy): blur that "
                   "varies across the frame, applied as a camera does (the output is the centre, less the kernel's radius)")
    add_sigma(p, "--sigma", default=0.0)
    add_seed(p, "--seed", default=0, help="noise seed")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=cmd_blur)

    p = sub.add_parser("estimate-kernel", help="the M-step alone: kernel from a sharp and a blurry image")
    p.add_argument("--sharp", required=True, help="sharp image file")
    p.add_argument("--blurry", required=True, help="image file or .npy written by `fdem blur`")
    add_sigma(p, "--sigma", required=True)
    add_kernel_size(p, "--kernel-size", default=33)
    p.add_argument("--reg", default="pnp", choices=["pnp", "l1", "l2"], help="kernel regularisation")
    add_float(p, "--lam", minimum=0, help="regularisation weight, >= 0 (default: the authors' PnP λ)")
    add_int(p, "--iters", minimum=1, maximum=10_000, default=10, help="M-step iterations, in [1, 10000]")
    p.add_argument("--out", required=True, type=output_file(".npy"), help="kernel .npy (a viewable .png is written beside it)")
    p.set_defaults(func=cmd_estimate_kernel)
