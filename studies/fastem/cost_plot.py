"""Quality against cost for the variants of :mod:`studies.fastem.fastem_study`: PSNR and kernel
MSE against seconds per image, one curve per step rule (issue 15's plot)::

    python -m studies.fastem.cost_plot run1.md run2.md --out steps.png

Reads the tables that ``fastem_study`` prints (saved to files), so runs made at different times on
the same problems can share one plot; ``fastem_study --cost-plot`` draws the same plot for one run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fdem.errors import InputError
from studies.common import Result, plot_costs, run_script

REFERENCE_ROWS = ("blurry input", "Wiener + M-step")


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="+", help="saved outputs of fastem_study")
    parser.add_argument("--out", required=True, help="the PNG to write")
    args = parser.parse_args(argv)
    plot_costs(read_tables(args.tables), args.out)
    print(f"plot: {args.out}")


if __name__ == "__main__":
    run_script(main)
