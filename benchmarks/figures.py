"""Pictures of a benchmark run that a person looks at: the restorations side by side (the paper's
Figure 3), and the drawing helpers the plots of :mod:`fdem.benchmarks.tables` share.

``comparison.png``: one row per shown sample (a few, :func:`pick_samples`), columns blurry input |
each method's restoration, in config order | ground truth, each cell annotated with the PSNR of
the image shown; a method's estimated kernel is an inset in the corner of its image (the true
kernel in the ground truth's), scaled to its maximum and enlarged with nearest neighbour.

The pixels come from the run itself. :class:`~fdem.benchmarks.module.BenchmarkModule` saves, for
the shown samples only (memory and disk stay bounded), one file per (method, sample) and one per
sample (blurry input, ground truth, true kernel) under ``out/comparison/``, each written
atomically; every process writes the samples it ran, and a resumed run keeps the files of its
finished rows, so rank 0 draws the figure from disk after prediction, whatever the process count.
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from fdem.io_utils import atomic_path

FOLDER = "comparison"
SAMPLE = "_sample"  # the folder of the samples themselves; method folders always end in -<hash>
DEFAULT_ROWS = 4
CELL_INCHES = 1.25  # side of one image cell
DPI = 150
FONT_PT = 8  # every text of the figure: 16.7 pixels high at DPI
HEADER_LINES = 3  # a method label is wrapped onto at most this many lines
HEADER_CHARS = 19  # characters per header line that fit CELL_INCHES at FONT_PT
INSET = 0.36  # kernel inset side, as a fraction of the cell
KERNEL_PIXELS = 64  # a kernel is enlarged (nearest neighbour) to at least this many pixels a side


# --- which samples, and where their data lies ---

def pick_samples(keys: Sequence[tuple[int, float]], count: int = DEFAULT_ROWS) -> list[int]:
    """The grid indices of the samples the figure shows, from ``(index, σ)`` in dataset order:
    the first sample of each σ, then the second of each, … up to ``count``, in dataset order.
    Deterministic, and every σ is shown when ``count`` allows, so every process picks the same."""
    by_sigma: dict[float, list[int]] = {}
    for index, sigma in keys:
        by_sigma.setdefault(float(sigma), []).append(int(index))
    picked: set[int] = set()
    depth = 0
    while len(picked) < count and any(depth < len(v) for v in by_sigma.values()):
        for indices in by_sigma.values():
            if depth < len(indices) and len(picked) < count:
                picked.add(indices[depth])
        depth += 1
    return [int(i) for i, _ in keys if int(i) in picked]


def label_folder(label: str) -> str:
    """A file-system-safe folder name for a method label, distinct for distinct labels (a label
    may hold ``/``, spaces, parentheses): its safe characters, then a hash of the whole label."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:40]
    return f"{slug}-{hashlib.sha1(label.encode()).hexdigest()[:8]}"


def _cell_path(out: Path, folder: str, index: int) -> Path:
    return Path(out) / FOLDER / folder / f"{index:06d}.npz"


def _save_npz(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)


def save_cell(out: Path, label: str, sample: dict, image, kernel=None) -> None:
    """Store one method's restoration (``image (C, H, W)``, ``kernel (1, k, k)`` or None) of one
    sample, and the sample (``y``, ``sharp``, ``kernel``, ``sigma255``, ``image_id``, ``index``)
    unless a process stored it already."""
    index = int(sample["index"])
    arrays = {"image": _numpy(image)}
    if kernel is not None:
        arrays["kernel"] = _numpy(kernel)
    _save_npz(_cell_path(out, label_folder(label), index), **arrays)
    own = _cell_path(out, SAMPLE, index)
    if not own.is_file():
        _save_npz(own, y=_numpy(sample["y"]), sharp=_numpy(sample["sharp"]), kernel=_numpy(sample["kernel"]),
                  sigma255=float(sample["sigma255"]), image_id=str(sample["image_id"]))


def _numpy(value) -> np.ndarray:
    """A tensor or array as float32 numpy on the CPU."""
    if hasattr(value, "detach"):
        value = value.detach().float().cpu().numpy()
    return np.asarray(value, dtype=np.float32)


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


# --- drawing ---

def wrap_label(text: str, width: int, max_lines: int | None = None) -> str:
    """``text`` on lines of at most ``width`` characters (at most ``max_lines``, the last one
    ending in "…" when cut), so long method labels neither overflow nor squeeze the plot."""
    lines = textwrap.wrap(text, width, max_lines=max_lines, placeholder=" …", break_on_hyphens=False) or [""]
    return "\n".join(lines)


def psnr_of(image: np.ndarray, sharp: np.ndarray) -> float:
    """PSNR in dB of an image against the ground truth, by the harness's definition (fdem.metrics.psnr)."""
    import torch

    from fdem.metrics import psnr

    return float(psnr(torch.from_numpy(image)[None], torch.from_numpy(sharp)[None]))


def enlarge_kernel(kernel: np.ndarray, pixels: int = KERNEL_PIXELS) -> np.ndarray:
    """A ``(k, k)`` kernel (any leading singleton axes; a square field ``(G·G, k, k)`` as its grid) scaled to
    its maximum (negatives to 0) and enlarged by nearest neighbour to at least ``pixels`` a side: its few
    pixels stay crisp squares."""
    cells = np.asarray(kernel, dtype=np.float64).reshape(-1, *kernel.shape[-2:])
    side = math.isqrt(len(cells))
    size = cells.shape[-1]
    k = np.clip(cells.reshape(side, side, size, size).transpose(0, 2, 1, 3).reshape(side * size, side * size), 0, None)
    top = k.max()
    k = k / top if top > 0 else k
    factor = max(1, math.ceil(pixels / max(k.shape)))
    return np.repeat(np.repeat(k, factor, axis=0), factor, axis=1)


def _show_image(ax, image: np.ndarray) -> None:
    """``image (C, H, W)`` clipped to [0, 1], grey for one channel, no ticks."""
    pixels = np.clip(np.moveaxis(image, 0, -1), 0, 1)
    if pixels.shape[-1] == 1:
        ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(pixels, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def _show_kernel(ax, kernel: np.ndarray) -> None:
    """The kernel as an inset in the cell's lower right corner, framed in white."""
    inset = ax.inset_axes([1 - INSET, 0, INSET, INSET])
    inset.imshow(enlarge_kernel(kernel), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("white")
        spine.set_linewidth(1.0)


def _empty_cell(ax, like: np.ndarray, text: str) -> None:
    """A light grey image of ``like``'s shape (so the cell keeps its size) saying ``text``."""
    _show_image(ax, np.full_like(like, 0.92))
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=FONT_PT, color="0.4", transform=ax.transAxes)


def figure_pixels(rows: int, columns: int) -> tuple[int, int]:
    """Pixel size of a comparison of ``rows`` samples and ``columns`` image columns at :data:`DPI`:
    square cells, room for the PSNR line under each and the wrapped headers above the first."""
    header = (HEADER_LINES + 1) * FONT_PT * 1.25 / 72
    caption = 2.2 * FONT_PT / 72
    inches = (columns * CELL_INCHES + 0.35, rows * (CELL_INCHES + caption) + header + 0.1)
    return math.ceil(inches[0] * DPI), math.ceil(inches[1] * DPI)


def _figure_inches(pixels: tuple[int, int]) -> tuple[float, float]:
    """Inches that Matplotlib turns into exactly ``pixels`` (it truncates size × dpi)."""
    return (pixels[0] + 0.25) / DPI, (pixels[1] + 0.25) / DPI


def comparison_figure(out: Path, labels: Sequence[str], indices: Sequence[int], path: Path | None = None,
                      title: str | None = None) -> Path | None:
    """Draw ``comparison.png`` from the files :func:`save_cell` left in ``out`` for ``indices``
    (samples without stored data are left out; a method without a file for a shown sample, a
    row finished by an older fdem, gets a grey "not stored" cell). Returns the path, or None
    when no sample has data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    samples = [(i, s) for i in indices if (s := _load(_cell_path(out, SAMPLE, i))) is not None]
    if not samples:
        return None
    columns = ["blurry input y", *labels, "ground truth"]
    fig, axes = plt.subplots(len(samples), len(columns), figsize=_figure_inches(figure_pixels(len(samples), len(columns))),
                             squeeze=False, layout="constrained")
    fig.get_layout_engine().set(w_pad=0.02, h_pad=0.02, wspace=0.0, hspace=0.0)
    for r, (index, sample) in enumerate(samples):
        cells = [_load(_cell_path(out, label_folder(label), index)) for label in labels]
        _draw_row(axes[r], sample, cells)
        axes[r][0].set_ylabel(f"{sample['image_id']}\nσ = {float(sample['sigma255']):g}/255", fontsize=FONT_PT)
    for ax, name in zip(axes[0], columns):
        ax.set_title(wrap_label(name, HEADER_CHARS, HEADER_LINES), fontsize=FONT_PT, va="bottom")
    if title:
        fig.suptitle(wrap_label(title, int(HEADER_CHARS * len(columns) * 0.9)), fontsize=FONT_PT + 1)
    return save_figure(fig, path or out / "comparison.png", dpi=DPI, tight=False)


def _draw_row(axes, sample: dict, cells: list[dict | None]) -> None:
    """One sample: input, the methods' restorations (the best PSNR in bold), truth with its kernel."""
    sharp = sample["sharp"]
    scores = [psnr_of(c["image"], sharp) if c is not None else -math.inf for c in cells]  # = the rows' PSNR SA
    best = max(scores) if cells else -math.inf
    _show_image(axes[0], sample["y"])
    _caption(axes[0], f"{psnr_of(np.clip(sample['y'], 0, 1), sharp):.2f} dB")
    for ax, cell, score in zip(axes[1:-1], cells, scores):
        if cell is None:
            _empty_cell(ax, sharp, "not stored")
            continue
        _show_image(ax, cell["image"])
        if "kernel" in cell:
            _show_kernel(ax, cell["kernel"])
        _caption(ax, f"{score:.2f} dB", bold=score == best and math.isfinite(best))
    _show_image(axes[-1], sharp)
    _show_kernel(axes[-1], sample["kernel"])
    _caption(axes[-1], "reference (true kernel)")


def _caption(ax, text: str, bold: bool = False) -> None:
    ax.set_xlabel(text, fontsize=FONT_PT, labelpad=2, fontweight="bold" if bold else "normal")


def save_figure(fig, path: Path, dpi: int = 120, tight: bool = True) -> Path:
    """Write ``fig`` atomically and close it. ``tight``: crop to what was drawn, so a title or a
    key outside the axes is never cut; off where the pixel size must follow the figure size."""
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight" if tight else None, pad_inches=0.1)
    plt.close(fig)
    return Path(path)


# --- labels that do not overlap ---

Box = tuple[float, float, float, float]  # x0, y0, x1, y1


def overlaps(a: Box, b: Box) -> bool:
    """Whether two boxes share interior area (touching edges do not count)."""
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


DIRECTIONS = ((1, 1), (1, -1), (-1, 1), (-1, -1), (1, 0), (0, 1), (-1, 0), (0, -1))  # upper right first


def place_labels(anchors: Sequence[tuple[float, float]], sizes: Sequence[tuple[float, float]],
                 obstacles: Sequence[Box] = (), bounds: Box | None = None, gap: float = 2.0,
                 step: float = 4.0, rings: int = 60) -> list[Box]:
    """Boxes for labels of ``sizes (w, h)`` next to their ``anchors`` (display pixels), placed in
    order: each takes the first position around its anchor, ring by ring outwards (8 directions
    per ring, upper right first), that overlaps no placed label and no obstacle (the markers) and
    stays inside ``bounds``; among those, one whose centre is no nearer another anchor than its
    own comes first (so a label reads as its own point's beside a close neighbour), where the
    cluster leaves room for one. Deterministic; a label that finds no free place within
    ``rings`` takes its first position inside ``bounds``."""
    placed: list[Box] = []
    for n, ((x, y), (w, h)) in enumerate(zip(anchors, sizes)):
        others = [a for m, a in enumerate(anchors) if m != n]
        inside = [b for b in _candidates(x, y, w, h, gap, step, rings) if bounds is None or _within(b, bounds)]
        free = [b for b in inside if not any(overlaps(b, other) for other in (*placed, *obstacles))]
        own = [b for b in free if _nearest_is_own(b, (x, y), others)]
        placed.append((own or free or inside or [(x, y, x + w, y + h)])[0])
    return placed


def _within(box: Box, bounds: Box) -> bool:
    return bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]


def _nearest_is_own(box: Box, anchor: tuple[float, float], others: list[tuple[float, float]]) -> bool:
    """Whether the box's centre is at least as near ``anchor`` as any of ``others``."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    own = math.hypot(cx - anchor[0], cy - anchor[1])
    return all(own <= math.hypot(cx - ox, cy - oy) for ox, oy in others)


def _candidates(x: float, y: float, w: float, h: float, gap: float, step: float, rings: int):
    """Boxes of size ``w × h`` around ``(x, y)``: ring by ring, 8 directions each, the box's
    nearest corner or edge at the ring's distance."""
    for ring in range(rings):
        d = gap + ring * step
        for dx, dy in DIRECTIONS:
            cx, cy = x + dx * (d + w / 2), y + dy * (d + h / 2)
            yield cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2
