"""From ``rows.csv`` to the paper's tables and figures.

* ``table1.csv`` / ``table1.md``: mean ± std over images of every metric, per method and σ, and
  pooled over σ ("all"); FID per method × σ over the set (when Inception features exist).
* ``compare.csv`` / ``compare.md`` (when the config names ``compare: {input, oracle}``): per method
  and σ, over the images the input label also has, the mean gain in PSNR over the input (e.g. the
  blurry image), the blind penalty against the oracle (e.g. a non-blind method given the true
  kernel) and how many images end below the input.
* ``table2.csv``: Diffusion EM and Fast EM by number of particles n, PSNR and PSNR of the particle
  mean ("PSNR SA").
* ``pareto.png``: PSNR against seconds per image (log x), one numbered point per method, the
  Pareto front of the blind methods drawn (the paper's Figure 1; the non-blind ones, hollow, are
  references); ``kernel_mse.png``: kernel MSE against σ (the paper's Figure 4).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from fdem.benchmarks.figures import place_labels, save_figure, wrap_label
from fdem.io_utils import atomic_write_text
from fdem.method_table import TABLE, is_em
from fdem.metrics.registry import METRICS, row_columns, table_columns

# (column in rows.csv, header in the tables, format): the time, then the registry's metrics
TABLE1_COLUMNS = (("seconds", "s/img", "{:.3g}"), *table_columns())
SET_COLUMNS = {m.table[0] for m in METRICS if m.source == "set" and m.table}  # FID: one value per group
POOLED = "all"


def load_rows(path: Path) -> pd.DataFrame:
    """``rows.csv`` as a frame, with a ``particles`` column and NaN for metric columns it lacks."""
    rows = pd.read_csv(path, dtype={"method": str, "method_name": str, "preset": str, "image_id": str, "params": str})
    rows["preset"] = rows["preset"].fillna("") if "preset" in rows else ""
    for column in row_columns():
        if column not in rows:
            rows[column] = math.nan
    rows["particles"] = [json.loads(p).get("particles", 1) if isinstance(p, str) else 1 for p in rows["params"]]
    return rows


def fid_by_group(rows: pd.DataFrame, out: Path) -> dict[tuple[str, str], float]:
    """FID of each method × σ (and pooled) from the saved Inception features; empty if none."""
    folder = out / "features"
    if not (folder / "_sharp").is_dir():
        return {}
    from fdem.metrics import fid_from_features

    result = {}
    for (method, sigma), group in _groups(rows):
        indices = list(group["index"])
        fake = [folder / method / f"{i:06d}.npy" for i in indices]
        real = [folder / "_sharp" / f"{i:06d}.npy" for i in indices]
        if len(indices) >= 2 and all(p.is_file() for p in fake + real):
            result[(method, sigma)] = float(fid_from_features(np.stack([np.load(p) for p in fake]),
                                                              np.stack([np.load(p) for p in real])))
    return result


def _groups(rows: pd.DataFrame):
    """((method, σ label), rows) per σ and pooled, methods in their order of appearance."""
    for method in dict.fromkeys(rows["method"]):
        of_method = rows[rows["method"] == method]
        for sigma in sorted(of_method["sigma255"].unique()):
            yield (method, f"{sigma:g}"), of_method[of_method["sigma255"] == sigma]
        if of_method["sigma255"].nunique() > 1:
            yield (method, POOLED), of_method


def table1(rows: pd.DataFrame, fid: dict) -> pd.DataFrame:
    """One line per method × σ: its preset (diffusion methods), count, then mean and std of every metric."""
    lines = []
    for (method, sigma), group in _groups(rows):
        line = {"method": method, "preset": group["preset"].iloc[0], "sigma255": sigma, "images": len(group)}
        for column, _, _ in TABLE1_COLUMNS:
            if column in SET_COLUMNS:
                line[f"{column}_mean"], line[f"{column}_std"] = fid.get((method, sigma), math.nan), math.nan
            else:
                line[f"{column}_mean"] = group[column].mean()
                line[f"{column}_std"] = group[column].std(ddof=0)
        lines.append(line)
    return pd.DataFrame(lines)


def _cell(mean: float, std: float, fmt: str) -> str:
    if math.isnan(mean):
        return "–"
    return fmt.format(mean) if math.isnan(std) or std == 0 else f"{fmt.format(mean)} ± {fmt.format(std)}"


def _sections(table: pd.DataFrame, headers: list[str], cells) -> str:
    """Markdown: one section per σ of ``table`` (then pooled), a line per table line: method, preset,
    images, then ``cells(line)`` under ``headers``."""
    parts = []
    for sigma in dict.fromkeys(table["sigma255"]):
        title = "pooled over σ" if sigma == POOLED else f"σ = {sigma}/255"
        lines = [f"**{title}**", "", "| method | preset | images | " + " | ".join(headers) + " |",
                 "|" + "---|" * (len(headers) + 3)]
        for _, line in table[table["sigma255"] == sigma].iterrows():
            lines.append(f"| {line['method']} | {line['preset'] or '–'} | {line['images']} | " + " | ".join(cells(line)) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def table1_markdown(table: pd.DataFrame) -> str:
    """Markdown: one section per σ (then pooled), columns of docs/design.md §6; empty columns dropped."""
    present = [(c, h, f) for c, h, f in TABLE1_COLUMNS if table[f"{c}_mean"].notna().any()]
    return _sections(table, [h for _, h, _ in present],
                     lambda line: [_cell(line[f"{c}_mean"], line[f"{c}_std"], f) for c, _, f in present])


COMPARED = ("psnr", "ssim", "kernel_mse")  # the metrics compare.csv averages, formatted as in Table 1
ALIGNED = "psnr_aligned"  # with it in the rows, compare also gives the gain and penalty in aligned PSNR


def compare_table(rows: pd.DataFrame, input_label: str, oracle_label: str | None = None) -> pd.DataFrame:
    """One line per method × σ (and pooled), over the samples the input label also has (paired by
    ``index``, i.e. image × kernel × σ): the mean of each :data:`COMPARED` metric; ``gain_db``, the
    mean of PSNR − the input's PSNR on the same sample; ``penalty_db``, the mean of the oracle's PSNR
    − PSNR (NaN without an oracle); ``below_input``, the samples where the method is below the input.
    Rows with :data:`ALIGNED` add its mean and the same gain and penalty in it (``*_aligned_db``).
    Differences are taken sample by sample so that a method run on fewer images is not credited
    with easier ones. Empty when the input has no rows."""
    aligned = ALIGNED in rows and rows[ALIGNED].notna().any()
    metrics = ("psnr", ALIGNED) if aligned else ("psnr",)

    def of(label, column) -> pd.Series:
        return rows.loc[rows["method"] == label].set_index("index")[column]

    base = {m: of(input_label, m) for m in metrics}
    oracle = {m: of(oracle_label, m) for m in metrics}
    extra = (ALIGNED, "gain_aligned_db", "penalty_aligned_db") if aligned else ()
    lines = []
    for (method, sigma), group in _groups(rows[rows["index"].isin(base["psnr"].index)]):
        line = {"method": method, "preset": group["preset"].iloc[0], "sigma255": sigma, "images": len(group),
                **{c: group[c].mean() for c in COMPARED + extra[:1]}}
        gains = {}
        for m, suffix in zip(metrics, ("_db", "_aligned_db")):
            value = group.set_index("index")[m]
            gains[m] = value - base[m].reindex(value.index)
            line["gain" + suffix] = gains[m].mean()
            line["penalty" + suffix] = (oracle[m].reindex(value.index) - value).mean()
        below = int((gains["psnr"] < 0).sum())
        lines.append({**line, "below_input": below, "below_input_frac": below / len(group)})
    return pd.DataFrame(lines, columns=["method", "preset", "sigma255", "images", *COMPARED, "gain_db", "penalty_db",
                                        "below_input", "below_input_frac", *extra])


def compare_markdown(table: pd.DataFrame) -> str:
    """Markdown of :func:`compare_table`, one section per σ as Table 1's (the aligned columns when present)."""
    formats = {c: f for c, _, f in TABLE1_COLUMNS if c in COMPARED}
    headers = [h for c, h, _ in TABLE1_COLUMNS if c in COMPARED]
    aligned = ALIGNED in table

    def cells(line) -> list[str]:
        out = [*(_cell(line[c], math.nan, formats[c]) for c in COMPARED),
               _cell(line["gain_db"], math.nan, "{:+.2f}"), _cell(line["penalty_db"], math.nan, "{:+.2f}"),
               f"{line['below_input']} / {line['images']}"]
        if aligned:
            out += [_cell(line[ALIGNED], math.nan, "{:.2f}"), _cell(line["gain_aligned_db"], math.nan, "{:+.2f}"),
                    _cell(line["penalty_aligned_db"], math.nan, "{:+.2f}")]
        return out

    extra = ["PSNR aligned", "gain aligned (dB)", "penalty aligned (dB)"] if aligned else []
    return _sections(table, [*headers, "gain over input (dB)", "blind penalty (dB)", "below input", *extra], cells)


def table2(rows: pd.DataFrame) -> pd.DataFrame:
    """Diffusion EM / Fast EM by particles n: mean PSNR and PSNR SA per σ and pooled."""
    em = rows[rows["method_name"].map(is_em).astype(bool)]
    lines = []
    for (name, n), group in em.groupby(["method_name", "particles"], sort=False):
        for (_, sigma), sub in _groups(group.assign(method=name)):
            lines.append({"method": name, "particles": int(n), "sigma255": sigma, "images": len(sub),
                          "psnr": sub["psnr"].mean(), "psnr_sa": sub["psnr_sa"].mean()})
    return pd.DataFrame(lines, columns=["method", "particles", "sigma255", "images", "psnr", "psnr_sa"])


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points (seconds, PSNR) not beaten by a faster-and-better one, by time."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1]))
    front, best = [], -math.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def is_blind(method_name: str) -> bool:
    """Whether a row's method estimates the kernel itself (the method table); a name the table
    does not know (rows of a renamed method) counts as blind."""
    return TABLE[method_name].blind if method_name in TABLE else True


def blind_front(points: list[tuple[float, float]], blind: list[bool]) -> list[int]:
    """The Pareto front among the blind methods only, as indices into ``points``: the paper ranks
    blind methods; the non-blind ones (given the true kernel) are references, never on the front."""
    kept = [i for i, b in enumerate(blind) if b]
    return [kept[j] for j in pareto_front([points[i] for i in kept])]


MARKER_PX = 5.0  # half the side of a marker's box that labels keep clear of (display pixels)


def pareto_plot(rows: pd.DataFrame, path: Path, title: str) -> Path:
    """PSNR against seconds per image (pooled over σ), log x, the blind methods' Pareto front as a
    step line. Points are numbered (numbers placed clear of every marker and of each other,
    :func:`fdem.benchmarks.figures.place_labels`) and the key beside the axes names them; the
    non-blind references are hollow."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    means = rows.groupby("method", sort=False).agg(seconds=("seconds", "mean"), psnr=("psnr", "mean"),
                                                   method_name=("method_name", "first"))
    points = list(zip(means["seconds"], means["psnr"]))
    blind = [is_blind(str(name)) for name in means["method_name"]]
    front = blind_front(points, blind)
    colors = ["C3" if i in front else "C0" if b else "0.35" for i, b in enumerate(blind)]
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for (s, p), b, color in zip(points, blind, colors):
        ax.plot(s, p, "o", ms=7, zorder=3, color=color, mfc=color if b else "white", mew=1.5)
    if len(front) > 1:
        ax.step([points[i][0] for i in front], [points[i][1] for i in front], where="post", color="C3", alpha=0.6)
    ax.set_xscale("log")
    ax.margins(0.12)
    ax.set_xlabel("seconds per image (log scale)")
    ax.set_ylabel("PSNR (dB), mean over all samples")
    ax.set_title(wrap_label(title, 60), fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    _number_points(fig, ax, points)
    key = [Line2D([], [], ls="", marker="o", color=c, mfc=c if b else "white", mew=1.5) for c, b in zip(colors, blind)]
    names = [f"{i + 1}  {wrap_label(str(m), 42).replace(chr(10), chr(10) + '    ')}" for i, m in enumerate(means.index)]
    fig.legend(key, names, loc="upper left", bbox_to_anchor=(1.02, 1.0), bbox_transform=ax.transAxes, fontsize=8,
               frameon=False, handletextpad=0.4, borderaxespad=0.0)
    kinds = {"blind": Line2D([], [], ls="", marker="o", color="C0"),
             "Pareto front of the blind methods": Line2D([], [], marker="o", color="C3"),
             "non-blind (reference)": Line2D([], [], ls="", marker="o", color="0.35", mfc="white", mew=1.5)}
    if all(blind):
        del kinds["non-blind (reference)"]
    ax.legend(kinds.values(), kinds.keys(), loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3, fontsize=8,
              frameon=False)
    return save_figure(fig, path)


def _number_points(fig, ax, points: list[tuple[float, float]]) -> None:
    """Write 1, 2, … next to the points, clear of every marker and of each other; a number pushed
    away from its point gets a thin leader line."""
    fig.canvas.draw()  # fixes the limits and transforms the boxes are computed in
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    renderer = fig.canvas.get_renderer()
    anchors = [tuple(v) for v in ax.transData.transform(points)]
    texts = [ax.text(0, 0, str(i + 1), fontsize=8, ha="center", va="center", zorder=4) for i in range(len(points))]
    sizes = [(b.width, b.height) for b in (t.get_window_extent(renderer) for t in texts)]
    markers = [(x - MARKER_PX, y - MARKER_PX, x + MARKER_PX, y + MARKER_PX) for x, y in anchors]
    frame = ax.get_window_extent(renderer)
    boxes = place_labels(anchors, sizes, markers, bounds=(frame.x0, frame.y0, frame.x1, frame.y1))
    to_data = ax.transData.inverted()
    for text, (x, y), box in zip(texts, anchors, boxes):
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        text.set_position(to_data.transform((cx, cy)))
        if math.hypot(cx - x, cy - y) > 2 * MARKER_PX + max(box[2] - box[0], box[3] - box[1]):
            ax.plot(*zip(to_data.transform((x, y)), to_data.transform((cx, cy))), color="0.5", lw=0.6, zorder=2)


def kernel_plot(rows: pd.DataFrame, path: Path, title: str) -> Path | None:
    """Mean kernel MSE against σ for the methods that estimate a kernel (Figure 4 style); the key
    (wrapped labels) sits beside the axes, where it hides no curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    blind = rows[rows["kernel_mse"].notna()]
    if blind.empty:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 4.4))
    for number, (method, group) in enumerate(blind.groupby("method", sort=False)):
        curve = group.groupby("sigma255")["kernel_mse"].mean()
        ax.plot(curve.index, curve.values, marker="osD^v<>ph*"[number % 10], label=wrap_label(str(method), 42))
    ax.set_yscale("log")
    ax.set_xticks(sorted(blind["sigma255"].unique()))
    ax.set_xlabel("σ (/255)")
    ax.set_ylabel("kernel MSE, mean over images")
    ax.set_title(wrap_label(title, 60), fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False, borderaxespad=0.0)
    ax.grid(True, which="both", alpha=0.3)
    return save_figure(fig, path)


def write_tables(out: Path, title: str = "fdem bench", compare: dict | None = None) -> dict[str, Path]:
    """Every table and plot of ``out/rows.csv``; returns their paths by name. ``compare`` (the
    config's ``{input: label, oracle: label}``) adds ``compare.csv``/``.md`` when the input has rows."""
    rows = load_rows(out / "rows.csv")
    if rows.empty:
        return {}
    t1 = table1(rows, fid_by_group(rows, out))
    written = {"table1.csv": out / "table1.csv", "table1.md": out / "table1.md", "table2.csv": out / "table2.csv"}
    atomic_write_text(written["table1.csv"], t1.to_csv(index=False))
    atomic_write_text(written["table1.md"], table1_markdown(t1))
    atomic_write_text(written["table2.csv"], table2(rows).to_csv(index=False))
    if compare:
        compared = compare_table(rows, compare["input"], compare.get("oracle"))
        if not compared.empty:
            written["compare.csv"], written["compare.md"] = out / "compare.csv", out / "compare.md"
            atomic_write_text(written["compare.csv"], compared.to_csv(index=False))
            atomic_write_text(written["compare.md"], compare_markdown(compared))
    written["pareto.png"] = pareto_plot(rows, out / "pareto.png", title)
    kernels = kernel_plot(rows, out / "kernel_mse.png", title)
    if kernels is not None:
        written["kernel_mse.png"] = kernels
    return written
