"""The loss curve of a `fdem fit` run, from its CSV log (Lightning's ``metrics.csv``), as a PNG::

    python -m studies.priors.training_curve runs/score_bsds64/logs/version_0/metrics.csv --out curve.png

Training loss (a running mean over ``--window`` logged points, the raw points faint) and the
validation loss against the optimiser step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from fdem.errors import InputError  # noqa: E402
from studies.common import run_script  # noqa: E402


def plot_curve(metrics_csv: str | Path, out: str | Path, window: int = 20, title: str | None = None) -> Path:
    """Write the train/val loss curve of ``metrics_csv`` to ``out``; returns ``out``."""
    path = Path(metrics_csv)
    if not path.is_file():
        raise InputError(f"training log not found: {path}")
    log = pd.read_csv(path)
    if "step" not in log or "train/loss" not in log:
        raise InputError(f"{path} has no step / train/loss columns: not a `fdem fit` CSV log")
    train = log.dropna(subset=["train/loss"])
    fig, ax = plt.subplots(figsize=(6, 3.6))
    ax.plot(train["step"], train["train/loss"], color="tab:blue", alpha=0.2, lw=0.8)
    ax.plot(train["step"], train["train/loss"].rolling(window, min_periods=1).mean(), color="tab:blue",
            label=f"train (running mean of {window})")
    if "val/loss" in log:
        val = log.dropna(subset=["val/loss"])
        ax.plot(val["step"], val["val/loss"], "o-", color="tab:orange", label="validation (EMA weights)")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("hybrid loss")
    ax.set_yscale("log")
    ax.set_title(title or path.parent.parent.parent.name)
    ax.legend()
    fig.tight_layout()
    out = Path(out)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("metrics_csv")
    parser.add_argument("--out", required=True, help="PNG file")
    parser.add_argument("--window", type=int, default=20, help="running-mean width of the training loss")
    parser.add_argument("--title")
    args = parser.parse_args(argv)
    print(plot_curve(args.metrics_csv, args.out, args.window, args.title))


if __name__ == "__main__":
    run_script(main)
