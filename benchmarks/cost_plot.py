"""Quality against cost for the variants of :mod:`fdem.benchmarks.fastem_study`: PSNR and kernel
MSE against seconds per image, one curve per step rule (issue 15's plot)::

    python -m fdem.benchmarks.cost_plot run1.md run2.md --out steps.png

Reads the tables that ``fastem_study`` prints (saved to files), so runs made at different times on
the same problems can share one plot; ``fastem_study --cost-plot`` draws the same plot for one run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fdem.benchmarks import run_script
from fdem.errors import InputError

Result = tuple  # (variant label, seconds per image, PSNR, kernel MSE or None)
REFERENCE_ROWS = ("blurry input", "Wiener + M-step")


def steps_of(label: str) -> int:
    """The network calls of a variant label (``steps=N``; ``default`` and no ``steps``: 100)."""
    for token in label.split():
        if token.startswith("steps="):
            return int(token.partition("=")[2])
    return 100


def rule_of(label: str) -> str:
    """A variant's label without its step count: the curve it belongs to."""
    rest = [t for t in label.split() if not t.startswith("steps=")]
    return " ".join(rest) or "default"


def read_tables(paths: list[str]) -> list[Result]:
    """The variant rows of saved ``fastem_study`` outputs (reference rows skipped)."""
    results = []
    for path in paths:
        if not Path(path).is_file():
            raise InputError(f"table file not found: {path}")
        for line in Path(path).read_text().splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) < 4 or cells[0] in ("variant", "") or set(cells[0]) <= {"-"} or cells[0].startswith(REFERENCE_ROWS):
                continue
            results.append((cells[0], float(cells[3]), float(cells[1]), None if cells[2] == "–" else float(cells[2])))
    if not results:
        raise InputError(f"no variant rows in {', '.join(paths)}")
    return results


def two_panels():
    """A headless figure with two side-by-side axes: ``(fig, left, right)``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    return fig, left, right


def save_panels(fig, left, right, out: str) -> None:
    """Legends on both axes, then the figure written to ``out`` and closed."""
    import matplotlib.pyplot as plt

    left.legend(fontsize=7)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_costs(results: list[Result], out: str) -> None:
    """PSNR and kernel MSE (log) against seconds per image (log), one curve per step rule, each
    point labelled with its network calls."""
    fig, left, right = two_panels()
    for rule in dict.fromkeys(rule_of(r[0]) for r in results):
        points = sorted((sec, p, m, steps_of(label)) for label, sec, p, m in results if rule_of(label) == rule)
        seconds = [q[0] for q in points]
        left.semilogx(seconds, [q[1] for q in points], "o-", label=rule)
        if all(q[2] is not None for q in points):
            right.loglog(seconds, [q[2] for q in points], "o-", label=rule)
        for sec, p, _, calls in points:
            left.annotate(str(calls), (sec, p), fontsize=7, xytext=(3, 3), textcoords="offset points")
    left.set(xlabel="seconds per image (log)", ylabel="PSNR (dB)", title="quality against cost (labels: network calls)")
    right.set(xlabel="seconds per image (log)", ylabel="kernel MSE", title="kernel against cost")
    save_panels(fig, left, right, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", help="saved outputs of fastem_study")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    plot_costs(read_tables(args.tables), args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    run_script(main)
