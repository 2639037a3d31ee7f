"""ΠGDM given the true kernel, told a noise level at or above the true one: how low a σ can a few-step
sampler take? (the photo preset's ``sigma_floor``, docs/design.md §15).

    python -m studies.noise_level.floor_check --images ../shared/data/bsds500/val --count 6 --true 1 --told 1 2 3 5

Prints one line per crop: the blurry input's PSNR and the restored PSNR for each told σ (255 scale);
``pigdm`` under ``photo`` with one chain and no floor, so the told σ is what the sampler uses.
"""

from __future__ import annotations

import argparse


from studies.common import protocol_samples, run_script


def main(argv: list[str] | None = None) -> None:
    from fdem.metrics import psnr
    from fdem.restorers import build_restorer

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", required=True)
    p.add_argument("--count", type=int, default=6)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--true", type=float, default=1.0, help="the observations' σ, 255 scale")
    p.add_argument("--told", type=float, nargs="+", default=[1, 2, 3, 5], help="the σ values given to the sampler")
    p.add_argument("--steps", type=int, help="sampler steps (default: the preset's)")
    args = p.parse_args(argv)
    samples = protocol_samples(args.images, args.count, [args.true], args.size)
    options = {} if args.steps is None else {"steps": args.steps}
    restorer = build_restorer("pigdm", "cpu", preset="photo", restarts=1, sigma_floor=0, **options)
    print("| crop | blurry | " + " | ".join(f"told {t:g}" for t in args.told) + " |")
    print("|---" * (len(args.told) + 2) + "|")
    for sample in samples:
        y, x, k = sample["y"][None].clamp(0, 1), sample["sharp"][None], sample["kernel"][None]
        cells = [f"{float(psnr(y, x)):.2f}"]
        for told in args.told:
            result = restorer.restore(y, told / 255, kernel=k, seed=1)
            cells.append(f"{float(psnr(result.image.clamp(0, 1), x)):.2f}")
        print(f"| {sample['image_id']} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    run_script(main)
