"""Pictures of a bench run: the comparison figure comes from the run's own restorations, the
Pareto front ranks blind methods only, and point labels never overlap."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from fdem.benchmarks.figures import (HEADER_LINES, enlarge_kernel, figure_pixels, label_folder, overlaps,
                                     pick_samples, place_labels, wrap_label)
from fdem.benchmarks.tables import blind_front, is_blind, pareto_plot
from fdem.cli import main

LONG = "Wiener + M-step (no prior, a label long enough to be wrapped onto several lines)"


def _tiny_config(root: Path, figure_rows: int) -> Path:
    """Two bundled photographs at 16², 2 σ (4 samples), the cheap methods, one with a long label."""
    cfg = {
        "title": "figure test", "out": str(root / "out"), "figure_rows": figure_rows,
        "data": {"images": "bundled", "num_images": 2, "size": 16, "kernels": "camera-shake", "kernel_size": 5,
                 "sigmas": [5, 20]},
        "methods": [{"method": "blurry", "options": {"kernel_size": 5}},
                    {"method": "l0-anger", "options": {"kernel_size": 5}},
                    {"method": "alternation", "label": LONG, "options": {"kernel_size": 5}}],
        "metrics": ["psnr"], "trainer": {"accelerator": "cpu"},
    }
    path = root / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_a_bench_run_draws_the_comparison_of_its_first_samples(tmp_path):
    """3 rows (first of each σ, then the next of σ=5) × (input + 3 methods + truth), each cell's
    data stored by the module for those samples only; a rerun (every row done) redraws it."""
    config = _tiny_config(tmp_path, figure_rows=3)
    main(["bench", "--config", str(config), "--no-progress"])
    out = tmp_path / "out"
    rows = pd.read_csv(out / "rows.csv")
    sigma = dict(zip(rows["index"], rows["sigma255"]))
    assert sigma == {0: 5, 1: 5, 2: 20, 3: 20}  # grid index (σ number · 2 images + image number)
    shown = [0, 1, 2]  # the first sample of each σ, then the next one of σ = 5
    stored = {p.relative_to(out / "comparison").as_posix() for p in (out / "comparison").rglob("*.npz")}
    folders = ["_sample", *(label_folder(m) for m in ("blurry", "l0-anger", LONG))]
    assert stored == {f"{f}/{i:06d}.npz" for f in folders for i in shown}
    with np.load(out / "comparison" / label_folder(LONG) / f"{shown[0]:06d}.npz") as cell:
        assert cell["image"].shape == (3, 16, 16) and cell["kernel"].shape == (1, 5, 5)
    expected = figure_pixels(3, 5)
    assert Image.open(out / "comparison.png").size == expected
    (out / "comparison.png").unlink()
    main(["bench", "--config", str(config), "--no-progress"])
    assert Image.open(out / "comparison.png").size == expected


def test_no_comparison_when_figure_rows_is_zero(tmp_path):
    main(["bench", "--config", str(_tiny_config(tmp_path, figure_rows=0)), "--no-progress", "--methods", "blurry"])
    out = tmp_path / "out"
    assert (out / "rows.csv").is_file() and not (out / "comparison.png").exists() and not (out / "comparison").exists()


def test_figure_size_grows_with_rows_and_columns():
    w3, h3 = figure_pixels(3, 5)
    w4, h4 = figure_pixels(4, 6)
    assert w4 > w3 and h4 > h3


def test_pick_samples_shows_every_sigma_first():
    keys = [(i, 5.0) for i in range(3)] + [(10 + i, 20.0) for i in range(3)]  # dataset order: σ=5 first
    assert pick_samples(keys, 4) == [0, 1, 10, 11]
    assert pick_samples(keys, 3) == [0, 1, 10]
    assert pick_samples(keys, 1) == [0]
    assert pick_samples(keys, 0) == []
    assert pick_samples(keys, 99) == [i for i, _ in keys]


def test_label_folders_are_safe_and_distinct():
    a, b = label_folder("pigdm (25 steps from T/2)"), label_folder("pigdm (25 steps from T 2)")
    assert a != b and "/" not in a + b and " " not in a + b


def test_long_labels_wrap_onto_at_most_three_lines():
    wrapped = wrap_label(LONG, 19, HEADER_LINES).split("\n")
    assert 2 <= len(wrapped) <= HEADER_LINES and all(len(line) <= 19 for line in wrapped)
    assert wrapped[-1].endswith("…") and wrap_label("l0-anger", 19, HEADER_LINES) == "l0-anger"


def test_kernels_are_enlarged_by_nearest_neighbour_and_scaled_to_their_max():
    kernel = np.zeros((1, 9, 9))
    kernel[0, 4, 4], kernel[0, 4, 5] = 0.2, 0.1
    big = enlarge_kernel(kernel, pixels=64)
    assert big.shape == (72, 72) and big.max() == 1.0
    assert np.all(big[32:40, 32:40] == 1.0) and np.all(big[32:40, 40:48] == 0.5)


def test_the_pareto_front_ranks_blind_methods_only():
    """pigdm (non-blind) is better and faster than all; the front is still made of blind methods."""
    names = ["blurry", "pigdm", "l0-anger", "fastem-pigdm", "dps"]
    points = [(0.001, 22.0), (1.0, 30.0), (0.5, 23.0), (20.0, 28.0), (0.01, 29.0)]
    blind = [is_blind(n) for n in names]
    assert blind == [True, False, True, True, False]
    front = blind_front(points, blind)
    assert front == [0, 2, 3]
    assert blind_front(points, [True] * 5) == [0, 4, 1]  # all ranked: the non-blind points would take it


def test_unknown_method_names_count_as_blind():
    assert is_blind("renamed-method") and not is_blind("dps")


def _scattered(n: int, seed: int, spread: float) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    return [tuple(v) for v in rng.normal(200, spread, size=(n, 2))]


def _label_sizes(n: int) -> list[tuple[float, float]]:
    return [(7.0 * len(str(i + 1)), 11.0) for i in range(n)]  # the numbers 1..n at 8 pt, in pixels


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_placed_labels_overlap_no_label_and_no_marker(seed):
    """12 points in a tight cluster (markers overlapping each other): every label still finds a
    free place inside the frame, at its own size; the same input gives the same places."""
    anchors = _scattered(12, seed, spread=8.0)
    sizes = _label_sizes(len(anchors))
    markers = [(x - 5, y - 5, x + 5, y + 5) for x, y in anchors]
    bounds = (0.0, 0.0, 400.0, 400.0)
    boxes = place_labels(anchors, sizes, markers, bounds=bounds)
    assert len(boxes) == len(anchors)
    for i, a in enumerate(boxes):
        assert not any(overlaps(a, m) for m in markers)
        assert not any(overlaps(a, b) for b in boxes[i + 1:])
        assert bounds[0] <= a[0] and a[2] <= bounds[2] and bounds[1] <= a[1] and a[3] <= bounds[3]
        assert (a[2] - a[0], a[3] - a[1]) == pytest.approx(sizes[i])
    assert place_labels(anchors, sizes, markers, bounds=bounds) == boxes


def test_placed_labels_sit_nearest_their_own_point():
    """Points as in the demo's 20-second cluster: two markers overlapping (6 px apart), others a
    few marker widths away: each number is nearer its own point than any other, and close to it."""
    anchors = [(100.0, 100.0), (106.0, 101.0), (100.0, 125.0), (130.0, 95.0), (80.0, 80.0), (300.0, 300.0)]
    markers = [(x - 5, y - 5, x + 5, y + 5) for x, y in anchors]
    boxes = place_labels(anchors, _label_sizes(len(anchors)), markers)
    for i, box in enumerate(boxes):
        centre = ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        distances = [math.dist(centre, p) for p in anchors]
        assert distances[i] == min(distances) and distances[i] < 30
    assert not any(overlaps(a, b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_overlaps_counts_shared_area_only():
    assert overlaps((0, 0, 2, 2), (1, 1, 3, 3))
    assert not overlaps((0, 0, 1, 1), (1, 0, 2, 1))  # touching edges
    assert not overlaps((0, 0, 1, 1), (5, 5, 6, 6))


def test_pareto_plot_keeps_its_title_and_key(tmp_path):
    """A long title and long labels end up in the picture (cropped to what was drawn), not cut:
    the picture is wider than the axes alone would be."""
    labels = ["blurry input (Dirac kernel)", "pigdm (25 DDIM steps from T/2)", LONG]
    rows = pd.DataFrame({"method": labels, "method_name": ["blurry", "pigdm", "alternation"],
                         "seconds": [1e-4, 10.0, 0.5], "psnr": [22.0, 27.0, 24.0]})
    path = pareto_plot(rows, tmp_path / "pareto.png", "a title long enough " * 6)
    width, height = Image.open(path).size
    assert width > 6.0 * 120 and height > 4.0 * 120


@pytest.mark.parametrize("rows", [-1, 1.5, True])
def test_bad_figure_rows_is_refused(tmp_path, rows):
    from fdem.benchmarks.run import BenchConfig
    from fdem.errors import InputError

    config = _tiny_config(tmp_path, figure_rows=rows)
    with pytest.raises(InputError, match="figure_rows: expected an integer >= 0"):
        BenchConfig.from_yaml(config)
