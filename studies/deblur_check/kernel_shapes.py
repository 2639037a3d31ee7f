"""What a blind kernel looks like next to the true one: shape numbers and a picture for chosen crops.

The benchmark tables give one kernel MSE per crop; this probe shows *how* a kernel is wrong. For the
crops ``--indices`` of a ``fdem bench`` config's data (the same observations, the same sampler seeds as
the bench), it runs one method with options (``--set key=value``, as a config row's ``options``) and
prints per crop the kernel MSE, how many pixels hold more than 1 % of the kernel's peak (a thin stroke
has few, a clump many) and the RMS radius about the centre of mass (how far the blur reaches), true
against estimated; ``--out`` draws true | estimated, one row per crop (docs/results.md, "The blind
penalty on photographs")::

    python -m studies.deblur_check.kernel_shapes --config configs/bench/deblur_check_val_sampler.yaml \\
        --indices 3 8 --set preset=photo --out kernels.png
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from fdem.restorers import build_restorer
from studies.common import config_samples, key_values, run_script

PEAK_SHARE = 0.01  # a pixel above this share of the kernel's peak counts towards its support


def support(kernel: Tensor) -> int:
    """Pixels of a ``(k, k)`` kernel above :data:`PEAK_SHARE` of its peak."""
    return int((kernel > PEAK_SHARE * kernel.max()).sum())


def rms_radius(kernel: Tensor) -> float:
    """The root-mean-square distance (px) of a ``(k, k)`` kernel's mass from its centre of mass."""
    weights = kernel / kernel.sum()
    rows, cols = torch.meshgrid(*(torch.arange(n, dtype=weights.dtype) for n in weights.shape), indexing="ij")
    centre_r, centre_c = (weights * rows).sum(), (weights * cols).sum()
    return float((weights * ((rows - centre_r) ** 2 + (cols - centre_c) ** 2)).sum().sqrt())


def probe(config: str, indices: list[int], method: str, options: dict) -> list[dict]:
    """Per crop of ``indices``: the true and estimated kernels and their shape numbers."""
    samples, restorer = config_samples(config), build_restorer(method, "cpu", **options)
    found = []
    for index in indices:
        sample = samples[index]
        result = restorer.restore(sample["y"][None], sample["sigma"], seed=sample["seed"])
        true, estimate = sample["kernel"][0].double(), result.kernel.reshape(sample["kernel"].shape)[0].double()
        found.append({"index": index, "true": true, "estimate": estimate, "kernel_mse": float((true - estimate).square().mean()),
                      "support": (support(true), support(estimate)), "radius": (rms_radius(true), rms_radius(estimate))})
    return found


def draw(found: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(len(found), 2, figsize=(4, 2 * len(found)), squeeze=False)
    for row, crop in zip(axes, found):
        for ax, key in zip(row, ("true", "estimate")):
            ax.imshow(crop[key].numpy(), cmap="gray")
            ax.set_title(f"crop {crop['index']}: {key}", fontsize=8)
            ax.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a fdem bench config: its data section is used")
    parser.add_argument("--indices", type=int, nargs="+", required=True, help="sample indices of the config's data")
    parser.add_argument("--method", default="fastem-pigdm")
    parser.add_argument("--set", nargs="*", default=["preset=photo"], metavar="KEY=VALUE", help="the method's options")
    parser.add_argument("--out", help="picture of true | estimated kernels")
    args = parser.parse_args(argv)
    found = probe(args.config, args.indices, args.method, key_values(args.set))
    print("| crop | kernel MSE | support, true / estimated (px) | RMS radius, true / estimated (px) |\n|---|---|---|---|")
    for crop in found:
        print(f"| {crop['index']} | {crop['kernel_mse']:.2e} | {crop['support'][0]} / {crop['support'][1]} "
              f"| {crop['radius'][0]:.1f} / {crop['radius'][1]:.1f} |")
    if args.out:
        draw(found, args.out)


if __name__ == "__main__":
    run_script(main)
