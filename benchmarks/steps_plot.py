"""``python -m fdem.benchmarks.steps_plot OUT``: the step-count study of ``configs/bench/steps.yaml``.

Reads ``OUT/rows.csv`` of a ``fdem bench`` run, groups rows by method and step rule (from each
row's ``params``: ``steps``, ``em_iters``, ``step_rule``; absent rule = ``ddpm``) and writes

* ``steps.csv`` / ``steps.md``: per method × rule × network calls, the mean seconds per image,
  PSNR, SSIM and kernel MSE over the problems (and their count);
* ``steps.png``: PSNR and kernel MSE against seconds per image (log x), one curve per method ×
  step rule, each point labelled with its network calls; methods without network calls (the
  blurry input, the prior-free alternation) as dotted horizontal references.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from fdem.benchmarks import run_script
from fdem.io_utils import atomic_write_text

METRICS = ("seconds", "psnr", "ssim", "kernel_mse")


def step_columns(params: str) -> tuple[str, int]:
    """``(step rule, network calls)`` of a row's ``params`` JSON: calls = steps × Diffusion EM rounds;
    the rule names its start when it is not 1 (``"mean from 0.5"``) and the blind kernel's options when
    they are not the paper's (``"ddim from 0.5, alternation start, relax 2"``), so each is its own curve."""
    p = json.loads(params) if isinstance(params, str) and params else {}
    if not p.get("steps"):  # a reference without network calls (blurry input, prior-free alternation)
        return "–", 0
    rule = p.get("step_rule", "ddpm") + (f" from {p['start']:g}" if p.get("start", 1) < 1 else "")
    rule += f", {p['kernel_init']} start" if "kernel_init" in p else ""
    rule += f", relax {p['kernel_relax']:g}" if "kernel_relax" in p else ""
    return rule, int(p.get("steps") or 0) * int(p.get("em_iters") or 1)


def study(rows: pd.DataFrame) -> pd.DataFrame:
    """Means over problems per (method_name, step_rule, net_calls), sorted by calls."""
    rows = rows.copy()
    rows[["step_rule", "net_calls"]] = [step_columns(p) for p in rows["params"]]
    present = [m for m in METRICS if m in rows]
    table = rows.groupby(["method_name", "step_rule", "net_calls"])[present].mean()
    table["problems"] = rows.groupby(["method_name", "step_rule", "net_calls"]).size()
    return table.reset_index().sort_values(["method_name", "step_rule", "net_calls"])


def markdown(table: pd.DataFrame) -> str:
    """``steps.md``: one line per method × rule × calls."""
    lines = ["| method | rule | calls | s/img | PSNR | SSIM | kernel MSE | problems |", "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        get = lambda name, fmt: format(getattr(r, name), fmt) if hasattr(r, name) else "–"  # noqa: E731
        lines.append(f"| {r.method_name} | {r.step_rule} | {r.net_calls} | {get('seconds', '.3g')} | {get('psnr', '.2f')} "
                     f"| {get('ssim', '.3f')} | {get('kernel_mse', '.3g')} | {r.problems} |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """PSNR and kernel MSE against seconds per image (log x), one curve per method × step rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    for (method, rule), curve in table.groupby(["method_name", "step_rule"], sort=False):
        for ax, column in zip(axes, ("psnr", "kernel_mse")):
            if column not in curve or curve[column].isna().all():
                continue
            if (curve["net_calls"] == 0).all():  # no network calls: a horizontal reference line
                ax.axhline(curve[column].mean(), color="grey", linestyle=":", label=method)
                continue
            ax.plot(curve["seconds"], curve[column], marker="o", linestyle="-" if rule == "ddpm" else "--",
                    label=f"{method} {rule}")
            for s, v, calls in zip(curve["seconds"], curve[column], curve["net_calls"]):
                ax.annotate(str(calls), (s, v), textcoords="offset points", xytext=(3, 3), fontsize=6)
    for ax, label in zip(axes, ("PSNR (dB)", "kernel MSE")):
        ax.set(xscale="log", xlabel="seconds per image (log scale)", ylabel=label)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(True, which="both", alpha=0.3)
    axes[1].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()  # one legend under both panels, off the curves
    rows = -(-len(labels) // 3)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.01 + 0.035 * rows, 1, 1))
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_study(out: Path, title: str = "fdem steps") -> dict[str, Path]:
    """``steps.csv``, ``steps.md`` and ``steps.png`` of ``out/rows.csv``; returns their paths."""
    from fdem.benchmarks.tables import load_rows

    table = study(load_rows(out / "rows.csv"))
    written = {"steps.csv": out / "steps.csv", "steps.md": out / "steps.md", "steps.png": out / "steps.png"}
    atomic_write_text(written["steps.csv"], table.to_csv(index=False))
    atomic_write_text(written["steps.md"], markdown(table))
    plot(table, written["steps.png"], title)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="the output folder of a `fdem bench` run (holds rows.csv)")
    parser.add_argument("--title", default="fdem steps")
    args = parser.parse_args(argv)
    for name, path in write_study(Path(args.out), args.title).items():
        print(f"{name}: {path}")
    print((Path(args.out) / "steps.md").read_text())


if __name__ == "__main__":
    run_script(main)
