"""How much one kernel can give on blur that varies: ΠGDM given the true field's best uniform stand-ins.

Issue 37 compares blind space-varying Fast EM with blind uniform Fast EM. Both are far below ΠGDM given
the true field (docs/results.md, "Blur that varies across the frame"); this probe separates the two
gaps: on the first ``--count`` observations of a field bench config (the same data and seeds), ΠGDM under
the ``field`` preset with one kernel, given (a) the mean of the true cells' kernels and (b) the centre
cell's kernel, against the blurry input. What one exact kernel gives bounds what a uniform blind
estimate can; the rest of the gap to the true field is what only a field can recover::

    python -m studies.kernel_field.uniform_ceiling --config configs/bench/kernel_field_val.yaml --count 4
"""

from __future__ import annotations

import argparse

import torch

from fdem.metrics.fidelity import psnr
from fdem.restorers import build_restorer
from studies.common import config_samples, key_values, run_script


def stand_ins(field: torch.Tensor) -> dict[str, torch.Tensor]:
    """One-kernel stand-ins ``(1, 1, k, k)`` for a true field ``(M, k, k)``: the cells' mean and the centre cell."""
    return {"mean of the cells": field.mean(dim=0)[None, None], "centre cell": field[field.shape[0] // 2][None, None]}


def run(config: str, count: int, options: dict) -> list[dict]:
    samples, restorer = config_samples(config), build_restorer("pigdm", "cpu", **options)
    rows = []
    for index in range(min(count, len(samples))):
        sample = samples[index]
        sharp, y = sample["sharp"][None], sample["y"][None]
        row = {"index": index, "blurry input": float(psnr(y.clamp(0, 1), sharp))}  # as the bench's blurry row
        for name, kernel in stand_ins(sample["kernel"].reshape(-1, *sample["kernel"].shape[-2:])).items():
            image = restorer.restore(y, sample["sigma"], kernel=kernel, seed=sample["seed"]).image
            row[name] = float(psnr(image.clamp(0, 1), sharp))
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="a fdem bench config with a kernel_grid in its data")
    parser.add_argument("--count", type=int, default=4)
    parser.add_argument("--set", nargs="*", default=["preset=field", "kernel_grid=1x1"], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    rows = run(args.config, args.count, key_values(args.set))
    names = [k for k in rows[0] if k != "index"]
    print("| image | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 1))
    for row in rows + [{"index": "mean", **{n: sum(r[n] for r in rows) / len(rows) for n in names}}]:
        print(f"| {row['index']} | " + " | ".join(f"{row[n]:.2f}" for n in names) + " |")


if __name__ == "__main__":
    run_script(main)
