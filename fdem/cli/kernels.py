"""``fdem kernels``, ``fdem blur``, ``fdem estimate-kernel``: kernel banks, synthetic observations,
and the M-step alone."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdem.cli.args import key_value, sigma255
from fdem.errors import InputError


def cmd_kernels(args: argparse.Namespace) -> None:
    """Write a seeded kernel bank (and optionally a preview grid)."""
    from fdem.kernels_gen import make_generator, save_bank, save_preview

    if args.count < 1:
        raise InputError(f"--count must be >= 1, got {args.count}")
    gen = make_generator(args.generator, args.size, **dict(args.param or []))
    kernels = gen.sample(args.count, seed=args.seed)
    save_bank(args.out, kernels, generator=gen, seed=args.seed)
    if args.preview:
        save_preview(kernels[:64], args.preview)
    print(f"wrote {args.count} {args.generator} kernels of {args.size}x{args.size} to {args.out}")
    if args.stats:
        print(stats_table(kernels))


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
    from fdem.io_utils import atomic_path, ensure_writable_dir
    from fdem.kernels_gen import load_bank
    from fdem.physics import add_noise, blur

    sigma = sigma255(args.sigma)
    kernels = load_bank(args.kernels)
    images = [(Path(p), load_image(p)) for p in args.images]  # everything is read before anything is written
    for path, img in images:
        if kernels.shape[-1] > min(img.shape[-2:]):
            raise InputError(f"kernels of {args.kernels} ({kernels.shape[-1]}x{kernels.shape[-1]}) are larger than image {path} {tuple(img.shape[-2:])}")
    out = ensure_writable_dir(args.out)
    g = torch.Generator().manual_seed(args.seed)
    for i, (path, img) in enumerate(images):
        k = kernels[i % len(kernels)][None]
        y = add_noise(blur(img[None], k), sigma, generator=g)[0]
        with atomic_path(out / f"{path.stem}_blurry.npy") as tmp:
            np.save(tmp, y.numpy())
        with atomic_path(out / f"{path.stem}_kernel.npy") as tmp:
            np.save(tmp, k[0, 0].numpy())
        save_image(out / f"{path.stem}_blurry.png", y)
    print(f"wrote {len(images)} observations to {out}")


def load_observation(path: str):
    """A blurry image: ``.npy`` (float, unclipped, as ``fdem blur`` writes) or any image file."""
    import numpy as np
    import torch

    from fdem.imageio import load_image

    if path.endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise InputError(f"cannot read {path}: {err}") from err
        if arr.ndim != 3 or not np.isfinite(arr).all():
            raise InputError(f"{path}: expected a finite (C, H, W) array, got shape {arr.shape}")
        return torch.from_numpy(arr.astype(np.float32))
    return load_image(path)


def cmd_estimate_kernel(args: argparse.Namespace) -> None:
    """The M-step alone: estimate the kernel from a sharp and a blurry image."""
    import numpy as np

    from fdem.imageio import load_image
    from fdem.io_utils import atomic_path
    from fdem.kernels_gen import save_preview
    from fdem.mstep import estimate_kernel

    sigma = sigma255(args.sigma)
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
    p.add_argument("--generator", default="camera-shake")
    p.add_argument("--size", type=int, default=33)
    p.add_argument("--count", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--param", type=key_value, action="append", metavar="KEY=VALUE", help="generator parameter")
    p.add_argument("--out", required=True)
    p.add_argument("--preview", help="PNG grid of (up to 64 of) the kernels")
    p.add_argument("--stats", action="store_true", help="print min/median/max shape statistics of the bank")
    p.set_defaults(func=cmd_kernels)

    p = sub.add_parser("blur", help="blur (and add noise to) images with kernels from a bank")
    p.add_argument("images", nargs="+")
    p.add_argument("--kernels", required=True, help=".npz bank, PNG folder or MATLAB .mat")
    p.add_argument("--sigma", type=float, default=0.0, help="noise level, 255 scale")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_blur)

    p = sub.add_parser("estimate-kernel", help="the M-step alone: kernel from a sharp and a blurry image")
    p.add_argument("--sharp", required=True)
    p.add_argument("--blurry", required=True, help="image file or .npy written by `fdem blur`")
    p.add_argument("--sigma", type=float, required=True, help="noise level, 255 scale")
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--reg", default="pnp", choices=["pnp", "l1", "l2"])
    p.add_argument("--lam", type=float, help="regularisation weight (default: the authors' PnP λ)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--out", required=True, help="kernel .npy (a viewable .png is written beside it)")
    p.set_defaults(func=cmd_estimate_kernel)
