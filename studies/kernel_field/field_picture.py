"""A recovered kernel field next to the true one: one photograph of the field benchmark's data (scene blur
through a camera-shake field with roll, σ = 5/255), space-varying Fast EM (the field preset) and uniform Fast EM
(the same preset with one kernel). Writes the picture (three grids side by side: the true field | the
estimated field | the uniform kernel in every cell) and prints each run's PSNR and kernel MSE per cell.

    python -m studies.kernel_field.field_picture --images ../shared/data/bsds500/test --index 0 --out field.png
"""

from __future__ import annotations

import argparse

import torch

from studies.common import field_samples, run_script


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import kernel_mse, recenter
    from fdem.kernels_gen import save_preview
    from fdem.metrics import psnr
    from fdem.restorers import build_restorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--index", type=int, default=0, help="which photograph of the folder (sorted)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--grid", default="3x3")
    p.add_argument("--out", required=True, help="PNG")
    args = p.parse_args(argv)
    sample = field_samples(args.images, args.index + 1, args.size, args.kernel_size, args.grid, 11)[args.index]
    y, x, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
    rows = [truth[0]]
    for label, options in (("space-varying Fast EM", {"kernel_grid": args.grid}), ("uniform Fast EM", {"kernel_grid": "1x1"})):
        result = build_restorer("fastem-pigdm", "cpu", preset="field", kernel_size=args.kernel_size, **options).restore(
            y, 5 / 255, seed=args.index)
        kernel = result.kernel.expand(-1, truth.shape[1], -1, -1)
        rows.append(recenter(kernel)[0])
        print(f"{label}: PSNR {float(psnr(result.image, x)[0]):.2f} dB, kernel MSE per cell "
              f"{float(kernel_mse(kernel, truth)[0]):.2e} (blurry input {float(psnr(y.clamp(0, 1), x)[0]):.2f} dB)")
    side = int(truth.shape[1] ** 0.5)
    grids = [row.reshape(side, side, *row.shape[-2:]) for row in rows]
    sheet = torch.cat([torch.cat([g[r] for g in grids]) for r in range(side)])  # each grid row: true | field | uniform
    save_preview(sheet[:, None], args.out, ncol=side * len(grids))
    print(f"wrote {args.out}: three {side}x{side} grids side by side, the true field | the estimated field | the uniform kernel")


if __name__ == "__main__":
    run_script(main)
