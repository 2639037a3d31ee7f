"""``l0-anger`` on BSDS500 crops: blurry input vs the method vs non-blind steps with its kernel.

The check of issue 13 item 7: 8 images (256² centre crops), 33×33 ``camera-shake`` kernels
(``make_generator("camera-shake", 33).sample(8, seed=1)``), σ = 5/255, circular blur, noise seeded
by the sample index, as ``fdem bench`` builds them. Tune on ``--split val``, report ``--split test``::

    python -m studies.l0.l0_check --split val
    python -m studies.l0.l0_check --split test --set protocol=paper   # the article's protocol

Columns: PSNR of the blurry input, of ``l0-anger`` (its defaults and any ``--set name=value``), of
Wiener and of TV (weight ``--tv-weight``) with the *estimated* kernel, of TV with the *true*
kernel, and the kernel MSE. (The crops are the data module's: short side resized to 256, then
centre-cropped.)
"""

from __future__ import annotations

import argparse
import json

import torch

from fdem.baselines.l0_anger import tv_deconv
from fdem.kernel_ops import kernel_mse
from fdem.metrics.fidelity import psnr
from fdem.physics import wiener_deconv
from fdem.restorer_base import Restorer
from fdem.restorers import build_restorer
from studies.common import run_script

ROOT = "/work/shared/data/bsds500"
COLUMNS = ("blurry", "l0-anger", "wiener k̂", "tv k̂", "tv k", "kernel MSE")


def samples(split: str, count: int, sigma255: float, root: str = ROOT):
    """The check's samples, built by the benchmark's data module (kernel bank seed 1, noise seed = index)."""
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    data = BlurBenchmarkDataModule(images=f"{root}/{split}", num_images=count, size=256, kernels="camera-shake",
                                   kernel_size=33, kernel_seed=1, sigmas=[sigma255], seed=0)
    data.setup("predict")
    return [data.dataset[i] for i in range(len(data.dataset))]


def check_one(sample: dict, restorer: Restorer, tv_weight: float) -> dict[str, float]:
    """The table's numbers for one sample."""
    y, sharp, truth = sample["y"][None], sample["sharp"][None], sample["kernel"][None]
    sigma = float(sample["sigma"])
    result = restorer.restore(y, sigma)
    k = result.kernel

    def score(image: torch.Tensor) -> float:
        return float(psnr(image.clamp(0, 1), sharp))

    return {
        "blurry": score(y), "l0-anger": score(result.image), "wiener k̂": score(wiener_deconv(y, k, sigma)),
        "tv k̂": score(tv_deconv(y, k, tv_weight, 300, 10 * tv_weight)),
        "tv k": score(tv_deconv(y, truth, tv_weight, 300, 10 * tv_weight)),
        "kernel MSE": float(kernel_mse(k, truth)),
    }


def markdown(rows: list[tuple[str, dict]]) -> str:
    lines = ["| image | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, row in rows:
        lines.append(f"| {name} | " + " | ".join(f"{row[c]:.2e}" if c == "kernel MSE" else f"{row[c]:.2f}"
                                              for c in COLUMNS) + " |")
    return "\n".join(lines)


def _value(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def main(argv: list[str] | None = None) -> list[tuple[str, dict]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--sigma", type=float, default=5.0, help="noise level on the 255 scale")
    parser.add_argument("--protocol", default=None, help="l0-anger protocol: tuned (default) or paper")
    parser.add_argument("--tv-weight", type=float, default=0.01, help="TV weight of the 'tv' columns")
    parser.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="another l0-anger option")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--root", default=ROOT, help="BSDS500 folder holding val/ and test/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    options = dict(kernel_size=33, **{k: _value(v) for k, v in (s.split("=", 1) for s in args.set)})
    restorer = build_restorer("l0-anger", **options)
    rows = []
    for sample in samples(args.split, args.images, args.sigma, args.root):
        rows.append((str(sample["image_id"]), check_one(sample, restorer, args.tv_weight)))
        print(f"{rows[-1][0]}: " + ", ".join(f"{c} {v:.4g}" for c, v in rows[-1][1].items()), flush=True)
    mean = {c: sum(r[c] for _, r in rows) / len(rows) for c in COLUMNS}
    rows.append(("mean", mean))
    print(f"\nl0-anger {json.dumps(restorer.params(), sort_keys=True)}, {args.split}, σ = {args.sigma:g}/255\n")
    print(markdown(rows))
    return rows


if __name__ == "__main__":
    run_script(main)
