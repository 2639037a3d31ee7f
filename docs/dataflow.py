"""Draws docs/dataflow.png, the README's picture of how data moves through fdem:
    .venv/bin/python docs/dataflow.py"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

BOXES = {  # name: (x, y, label, colour)
    "kgen": (0.0, 3.0, "kernels_gen\n(synthetic kernels)", "#dbe9f6"),
    "kfit": (2.4, 3.0, "fdem fit\nkernel denoiser", "#fde2c8"),
    "kden": (4.8, 3.0, "PnP kernel\ndenoiser", "#e4f2dc"),
    "mstep": (7.2, 3.0, "M-step (HQS)\nfdem/mstep.py", "#e4f2dc"),
    "photos": (0.0, 1.5, "photographs\n(BSDS500, FFHQ)", "#dbe9f6"),
    "sfit": (2.4, 1.5, "fdem fit\nscore prior", "#fde2c8"),
    "prior": (4.8, 1.5, "prior\nUNet + schedule", "#e4f2dc"),
    "loop": (7.2, 1.5, "sampler loop\nE-step + M-step", "#e4f2dc"),
    "data": (0.0, 0.0, "benchmark data\nimages × kernels × σ", "#dbe9f6"),
    "table": (2.4, 0.0, "method table\n→ restorers", "#f3e1f0"),
    "rows": (4.8, 0.0, "rows.csv\n(resumable)", "#f3e1f0"),
    "tables": (7.2, 0.0, "Table 1 / 2,\nPareto, kernel plots", "#f3e1f0"),
}
ARROWS = [("kgen", "kfit"), ("kfit", "kden"), ("kden", "mstep"), ("photos", "sfit"), ("sfit", "prior"),
          ("prior", "loop"), ("mstep", "loop"), ("loop", "mstep"), ("data", "table"), ("table", "rows"),
          ("rows", "tables"), ("loop", "table")]
SIDE_BY_SIDE = {("mstep", "loop"): -0.25, ("loop", "mstep"): 0.25}  # the two-way link, drawn as two arrows
W, H = 1.9, 0.9


def centre(name: str) -> tuple[float, float]:
    x, y = BOXES[name][:2]
    return x + W / 2, y + H / 2


def edge_points(a: str, b: str) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end of an arrow from box a to box b, on the boxes' borders."""
    (ax, ay), (bx, by) = centre(a), centre(b)
    if ay == by:
        sign = 1 if bx > ax else -1
        return (ax + sign * W / 2, ay), (bx - sign * W / 2, by)
    sign = 1 if by > ay else -1
    offset = SIDE_BY_SIDE.get((a, b), 0.0)
    return (ax + offset, ay + sign * H / 2), (bx + offset, by - sign * H / 2)


def main() -> Path:
    fig, ax = plt.subplots(figsize=(10, 4.4))
    for x, y, label, colour in BOXES.values():
        ax.add_patch(FancyBboxPatch((x, y), W, H, boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#555"))
        ax.text(x + W / 2, y + H / 2, label, ha="center", va="center", fontsize=9)
    for a, b in ARROWS:
        start, end = edge_points(a, b)
        ax.annotate("", xy=end, xytext=start, arrowprops=dict(arrowstyle="->", color="#333", lw=1.2))
    ax.set_xlim(-0.2, 9.3)
    ax.set_ylim(-0.2, 4.1)
    ax.axis("off")
    out = Path(__file__).with_name("dataflow.png")
    fig.savefig(out, dpi=110, bbox_inches="tight")
    return out


if __name__ == "__main__":
    print(main())
