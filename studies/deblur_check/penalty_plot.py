"""Where the blind penalty comes from: each crop's gain over the blurry input against how wrong its kernel is.

Reads a finished ``fdem bench`` folder of a ``deblur_check*.yaml`` config (``rows.csv`` and
``bench_data.json``), rebuilds the generated kernel bank from the config's data settings (kernel ``j``
depends only on the generator, size, seed and ``j``), and plots, per crop, the PSNR gain over the
input of a blind row against its relative kernel error ``‖k̂ − k‖² / ‖k‖²`` (kernel MSE × k² / ‖k‖²),
with the true-kernel row's gain drawn at zero error. It answers whether the crops that end below
the input are those whose kernel is wrong (studies/deblur_check/NOTES.md, item 5)::

    python -m studies.deblur_check.penalty_plot --run outputs/deblur_check --row "fastem-pigdm (photo)" \\
        --input "blurry input (Dirac kernel)" --oracle "pigdm (true kernel)" --out penalty.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fdem.kernels_gen import make_generator


def relative_kernel_error(rows: pd.DataFrame, data: dict) -> pd.Series:
    """``‖k̂ − k‖² / ‖k‖²`` of every row with a kernel MSE, from the bank the config generated."""
    size = data["kernel_size"]
    count = int(rows["kernel_id"].max()) + 1
    bank = np.asarray(make_generator(data["kernels"], size, **data.get("kernel_params", {})).sample(count, seed=data["kernel_seed"]))
    energy = (bank.reshape(count, -1) ** 2).sum(axis=1)
    return rows["kernel_mse"] * size * size / energy[rows["kernel_id"].to_numpy()]


def paired_gains(rows: pd.DataFrame, data: dict, row: str, input_label: str, oracle: str | None) -> pd.DataFrame:
    """Per sample index: the row's gain over the input, its relative kernel error, the oracle's gain."""
    by = {label: rows[rows["method"] == label].set_index("index") for label in (row, input_label, oracle) if label}
    out = pd.DataFrame({"gain": by[row]["psnr"] - by[input_label]["psnr"],
                        "kernel_error": relative_kernel_error(by[row], data)}).dropna()
    if oracle:
        out["oracle_gain"] = (by[oracle]["psnr"] - by[input_label]["psnr"]).reindex(out.index)
    return out


def plot(points: pd.DataFrame, row: str, path: Path) -> Path:
    """The scatter: gain against relative kernel error (log x), the oracle's gains at the left edge."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.scatter(points["kernel_error"], points["gain"], label=row, color="tab:blue")
    if "oracle_gain" in points:
        left = points["kernel_error"].min() / 3
        ax.scatter(np.full(len(points), left), points["oracle_gain"], marker="_", s=120, color="tab:green",
                   label="true kernel (drawn at the left edge)")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("relative kernel error ‖k̂ − k‖² / ‖k‖²")
    ax.set_ylabel("PSNR gain over the blurry input (dB)")
    ax.legend(fontsize=8, loc="lower left")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True, help="a finished fdem bench folder of a deblur_check config")
    parser.add_argument("--row", default="fastem-pigdm (photo)", help="the blind row to plot")
    parser.add_argument("--input", default="blurry input (Dirac kernel)", help="the input row's label")
    parser.add_argument("--oracle", default="pigdm (true kernel)", help="the true-kernel row's label ('' for none)")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    rows = pd.read_csv(args.run / "rows.csv")
    data = json.loads((args.run / "bench_data.json").read_text())["data"]
    points = paired_gains(rows, data, args.row, args.input, args.oracle or None)
    plot(points, args.row, args.out)
    wrong = points["kernel_error"] > 0.5
    print(f"{len(points)} crops; below the input: {int((points['gain'] < 0).sum())}, of which "
          f"{int(((points['gain'] < 0) & wrong).sum())} with a relative kernel error > 0.5 "
          f"({int(wrong.sum())} crops have one); mean gain {points['gain'].mean():+.2f} dB "
          f"(error <= 0.5: {points.loc[~wrong, 'gain'].mean():+.2f}, > 0.5: {points.loc[wrong, 'gain'].mean():+.2f})")
    if "oracle_gain" in points:
        print(f"true kernel on the same crops: error <= 0.5: {points.loc[~wrong, 'oracle_gain'].mean():+.2f} dB, "
              f"> 0.5: {points.loc[wrong, 'oracle_gain'].mean():+.2f} dB")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
