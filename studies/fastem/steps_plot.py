"""``python -m studies.fastem.steps_plot OUT``: the step-count study of ``configs/bench/steps.yaml``.

Reads ``OUT/rows.csv`` of a ``fdem bench`` run, groups rows by method and step rule (from each
row's ``params``: ``steps``, ``em_iters``, ``step_rule``; absent rule = ``ddpm``) and writes

* ``steps.csv`` / ``steps.md``: per method × rule × network calls, the mean seconds per image,
  PSNR, SSIM and kernel MSE over the problems (and their count), and against the same method's
  ancestral (``ddpm``) row with the most calls — the authors' 100 steps — the PSNR difference, the
  kernel-MSE ratio and the speed-up (issue 15's acceptance: ≤ 25 calls within 0.2 dB, 1.2×, ≥ 3.5×);
* ``steps.png``: PSNR and kernel MSE against seconds per image (log x), one curve per method ×
  step rule, each point labelled with its network calls; methods without network calls (the
  blurry input, the prior-free alternation) as horizontal references, each in its own dash
  style.

``--pair REFERENCE CANDIDATE`` (two ``method`` labels of ``rows.csv``) also prints their paired
comparison over the shared problems: the ratio of mean kernel MSEs and the PSNR difference with
bootstrap 95 % intervals over problems, how many problems each wins, and the one problem that
contributes most to the kernel ratio, with the ratio without it (a mean over 24 problems can hinge
on one), and draws it problem by problem in ``OUT/pair.png`` (kernel MSE and PSNR of the candidate
against the reference's). ``--pool OTHER [OTHER …]`` adds the rows of other runs of the same
methods (other problems, e.g. ``configs/bench/steps_check.yaml`` next to the grid) to that
comparison; a problem is then named by its run too. The tables and ``steps.png`` stay those of ``OUT``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from fdem.errors import InputError
from fdem.io_utils import atomic_write_text
from studies.common import run_script

METRICS = ("seconds", "psnr", "ssim", "kernel_mse")
REFERENCE_STYLES = ((":", "0.35"), ("-.", "0.6"))  # (line style, grey level) of each network-free reference


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
    return against_ancestral(table.reset_index().sort_values(["method_name", "step_rule", "net_calls"]))


def against_ancestral(table: pd.DataFrame) -> pd.DataFrame:
    """Adds ``psnr_gain`` (dB), ``kernel_mse_ratio`` and ``speedup`` of each row against its method's
    ``ddpm`` row with the most network calls (NaN where the method has none, or a metric is absent)."""
    table = table.copy()
    for column in ("psnr_gain", "kernel_mse_ratio", "speedup"):
        table[column] = float("nan")
    for method, rows in table.groupby("method_name"):
        ancestral = rows[rows["step_rule"] == "ddpm"]
        if ancestral.empty:
            continue
        ref = ancestral.loc[ancestral["net_calls"].idxmax()]
        mine = table["method_name"] == method
        if "psnr" in table:
            table.loc[mine, "psnr_gain"] = table.loc[mine, "psnr"] - ref["psnr"]
        if "kernel_mse" in table:
            table.loc[mine, "kernel_mse_ratio"] = table.loc[mine, "kernel_mse"] / ref["kernel_mse"]
        if "seconds" in table:
            table.loc[mine, "speedup"] = ref["seconds"] / table.loc[mine, "seconds"]
    return table


def problem_keys(rows: pd.DataFrame) -> list[str]:
    """The columns that name a problem (with its run when runs are pooled)."""
    return ["image_id", "kernel_id", "sigma255"] + (["run"] if "run" in rows else [])


def pair_rows(rows: pd.DataFrame, reference: str, candidate: str) -> pd.DataFrame:
    """One row per problem solved by both methods (``method`` labels), their columns suffixed ``_r`` / ``_c``."""
    keys = problem_keys(rows)
    both = rows[rows["method"] == reference].merge(rows[rows["method"] == candidate], on=keys, suffixes=("_r", "_c"))
    if both.empty:
        raise InputError(f"--pair: no problem solved by both {reference!r} and {candidate!r}")
    return both


def paired(rows: pd.DataFrame, reference: str, candidate: str, draws: int = 10_000, seed: int = 0) -> str:
    """``candidate`` against ``reference`` (``method`` labels) over the problems both solved
    (:func:`pair_summary` of :func:`pair_rows`)."""
    return pair_summary(pair_rows(rows, reference, candidate), reference, candidate, draws, seed)


def pair_summary(both: pd.DataFrame, reference: str, candidate: str, draws: int = 10_000, seed: int = 0) -> str:
    """The paired problems ``both`` (:func:`pair_rows`) summarised: kernel-MSE ratio of the means and PSNR
    difference, each with a bootstrap 95 % interval over problems (seeded)."""
    keys = problem_keys(both)
    k_r, k_c = both["kernel_mse_r"].to_numpy(), both["kernel_mse_c"].to_numpy()
    gain = (both["psnr_c"] - both["psnr_r"]).to_numpy()
    draw = np.random.default_rng(seed).integers(0, len(both), (draws, len(both)))
    ratio_ci = np.percentile(k_c[draw].mean(1) / k_r[draw].mean(1), [2.5, 97.5])
    gain_ci = np.percentile(gain[draw].mean(1), [2.5, 97.5])
    worst = int(np.argmax(k_c - k_r))
    without = np.delete(k_c, worst).mean() / np.delete(k_r, worst).mean()
    name = "/".join(str(both[k].iloc[worst]) for k in keys[:2])
    name += f" of {both['run'].iloc[worst]}" if "run" in both else ""
    return (f"{candidate} against {reference}, {len(both)} problems:\n"
            f"  kernel MSE ratio {k_c.mean() / k_r.mean():.3f} (95 % bootstrap {ratio_ci[0]:.2f}–{ratio_ci[1]:.2f}), "
            f"lower kernel MSE on {(k_c < k_r).sum()} of {len(both)}\n"
            f"  PSNR {gain.mean():+.2f} dB (95 % bootstrap {gain_ci[0]:+.2f} to {gain_ci[1]:+.2f}), higher on {(gain > 0).sum()}\n"
            f"  largest kernel excess: problem {name} ({k_r[worst]:.2g} → {k_c[worst]:.2g}); ratio without it {without:.3f}\n")


def pair_plot(both: pd.DataFrame, reference: str, candidate: str, path: Path) -> Path:
    """Problem by problem, the candidate's kernel MSE (log) and PSNR against the reference's, with the
    diagonal and the 1.2× line: where a mean ratio comes from (a few problems far off the diagonal)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.8))
    runs = both.groupby("run", sort=False) if "run" in both else [("", both)]
    for ax, column, scale in zip(axes, ("kernel_mse", "psnr"), ("log", "linear")):
        for run, part in runs:
            ax.scatter(part[f"{column}_r"], part[f"{column}_c"], s=14, alpha=0.75, label=str(run) or None)
        low = min(both[f"{column}_r"].min(), both[f"{column}_c"].min())
        high = max(both[f"{column}_r"].max(), both[f"{column}_c"].max())
        ax.plot([low, high], [low, high], color="0.4", linewidth=0.8, label="equal")
        if column == "kernel_mse":
            ax.plot([low, high], [1.2 * low, 1.2 * high], color="0.4", linestyle=":", linewidth=0.8, label="1.2×")
        ax.set(xscale=scale, yscale=scale, xlabel=reference, ylabel=candidate,
               title="kernel MSE per problem" if column == "kernel_mse" else "PSNR (dB) per problem")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def rows_path(folder: str) -> Path:
    """``folder/rows.csv``, or an :class:`InputError` naming the folder when it has none."""
    path = Path(folder) / "rows.csv"
    if not path.is_file():
        raise InputError(f"{folder}: no rows.csv (not the output folder of a `fdem bench` run)")
    return path


def pooled_rows(folders: list[str]) -> pd.DataFrame:
    """The rows of several runs' ``rows.csv`` with a ``run`` column (the folder) when there is more than
    one, so that problems of different runs never pair with each other."""
    from fdem.benchmarks.tables import load_rows

    if len(set(folders)) != len(folders):
        raise InputError(f"--pool: a run is named twice in {folders}")
    frames = [load_rows(rows_path(folder)) for folder in folders]
    if len(frames) == 1:
        return frames[0]
    return pd.concat([rows.assign(run=folder) for rows, folder in zip(frames, folders)], ignore_index=True)


def markdown(table: pd.DataFrame) -> str:
    """``steps.md``: one line per method × rule × calls, with its comparison to the 100 ancestral steps."""
    lines = ["| method | rule | calls | s/img | PSNR | SSIM | kernel MSE | problems | ΔPSNR vs ancestral | kernel MSE × | speed-up |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        def get(name: str, fmt: str) -> str:
            value = getattr(r, name, float("nan"))
            return "–" if pd.isna(value) else format(value, fmt)

        lines.append(f"| {r.method_name} | {r.step_rule} | {r.net_calls} | {get('seconds', '.3g')} | {get('psnr', '.2f')} "
                     f"| {get('ssim', '.3f')} | {get('kernel_mse', '.3g')} | {r.problems} | {get('psnr_gain', '+.2f')} "
                     f"| {get('kernel_mse_ratio', '.2f')} | {get('speedup', '.2f')} |")
    return "\n".join(lines) + "\n"


def plot(table: pd.DataFrame, path: Path, title: str) -> Path:
    """PSNR and kernel MSE against seconds per image (log x), one curve per method × step rule."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 5.2))
    references = 0
    for (method, rule), curve in table.groupby(["method_name", "step_rule"], sort=False):
        style, grey = REFERENCE_STYLES[references % len(REFERENCE_STYLES)]
        references += bool((curve["net_calls"] == 0).all())
        for ax, column in zip(axes, ("psnr", "kernel_mse")):
            if column not in curve or curve[column].isna().all():
                continue
            if (curve["net_calls"] == 0).all():  # no network calls: a horizontal reference line
                ax.axhline(curve[column].mean(), color=grey, linestyle=style, label=method)
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
    parser.add_argument("--pair", nargs=2, metavar=("REFERENCE", "CANDIDATE"),
                        help="two method labels of rows.csv to compare problem by problem")
    parser.add_argument("--pool", nargs="+", default=[], metavar="OTHER",
                        help="more `fdem bench` output folders whose problems join the --pair comparison")
    args = parser.parse_args(argv)
    if args.pool and not args.pair:
        raise InputError("--pool needs --pair: it only widens the paired comparison")
    rows_path(args.out)  # a missing rows.csv is one error line, before anything is written
    both = None
    if args.pair:  # checked before anything is written: a wrong label leaves the folder as it was
        both = pair_rows(pooled_rows([args.out, *args.pool]), *args.pair)
    for name, path in write_study(Path(args.out), args.title).items():
        print(f"{name}: {path}")
    if both is not None:
        print(f"pair.png: {pair_plot(both, *args.pair, Path(args.out) / 'pair.png')}")
    print((Path(args.out) / "steps.md").read_text())
    if both is not None:
        print(pair_summary(both, *args.pair))


if __name__ == "__main__":
    run_script(main)
