"""Variants of space-varying Fast EM on photographs blurred through camera-shake fields with roll: the
field preset with option overrides, one row per variant (mean PSNR, kernel MSE per cell, seconds per
image) and the per-image PSNR. Used on BSDS500 val to choose the field preset's options.

    python -m studies.kernel_field.field_variants --images ../shared/data/bsds500/val --count 4 \
        --variants "kernel_grid=1x1; ; field_shrink=0"
"""

from __future__ import annotations

import argparse
import time

import torch

from studies.common import field_samples, run_script


def parse_variants(text: str) -> list[dict]:
    """``"a=1 b=x; ; c=2"`` → ``[{"a": 1, "b": "x"}, {}, {"c": 2}]`` (values read as numbers where they are)."""
    variants = []
    for part in text.split(";"):
        options = {}
        for item in part.split():
            key, _, value = item.partition("=")
            try:
                options[key] = float(value) if "." in value else int(value)
            except ValueError:
                options[key] = value
        variants.append(options)
    return variants


def main(argv: list[str] | None = None) -> None:
    from fdem.kernel_ops import kernel_mse
    from fdem.metrics import psnr
    from fdem.restorers import build_restorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=4)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--kernel-size", type=int, default=33)
    p.add_argument("--grid", default="3x3", help="the data's field")
    p.add_argument("--kernel-seed", type=int, default=11)
    p.add_argument("--variants", default=";", help="';'-separated option overrides of the field preset (empty: as it is)")
    p.add_argument("--prior", help="score prior (default: the shipped one)")
    args = p.parse_args(argv)
    samples = field_samples(args.images, args.count, args.size, args.kernel_size, args.grid, args.kernel_seed)
    blurry = torch.stack([psnr(s["y"][None].clamp(0, 1), s["sharp"][None])[0] for s in samples])
    print(f"blurry input: mean PSNR {blurry.mean():.2f} dB ({', '.join(f'{v:.2f}' for v in blurry.tolist())})")
    print("| variant | PSNR | kernel MSE | s/image | per image |")
    print("|---|---|---|---|---|")
    for options in parse_variants(args.variants):
        restorer = build_restorer("fastem-pigdm", "cpu", preset="field", kernel_size=args.kernel_size,
                                  **({"prior": args.prior} if args.prior else {}), **options)
        began, scores, errors = time.perf_counter(), [], []
        for i, s in enumerate(samples):
            result = restorer.restore(s["y"][None], 5 / 255, seed=i)
            scores.append(float(psnr(result.image, s["sharp"][None])[0]))
            errors.append(float(kernel_mse(result.kernel, s["kernel"][None])[0]))
        name = " ".join(f"{k}={v}" for k, v in options.items()) or "field preset"
        seconds = (time.perf_counter() - began) / len(samples)
        print(f"| {name} | {sum(scores) / len(scores):.2f} | {sum(errors) / len(errors):.2e} | {seconds:.0f} | "
              f"{', '.join(f'{v:.2f}' for v in scores)} |", flush=True)


if __name__ == "__main__":
    run_script(main)
