"""The one registry of metrics: name, row columns, table cell, direction, what it needs.

The benchmark's rows (:mod:`fdem.benchmarks.rows`), its tables (:mod:`fdem.benchmarks.tables`),
the config's ``metrics:`` list (:mod:`fdem.benchmarks.run`), the metric suite and ``fdem metrics
check`` all read this table, so a metric is added here only. ``source`` says who computes it:

* ``suite``: :class:`~fdem.metrics.suite.MetricSuite`, per particle, averaged over the particles;
* ``set``: over a set of images (FID, from Inception features saved per image);
* ``kernel``: from the estimated kernel (blind methods only, NaN otherwise);
* ``mean``: on the mean of the particles.

Only ``suite`` and ``set`` metrics are chosen in a config; the others are always computed.
"""

from __future__ import annotations

from dataclasses import dataclass

from fdem.errors import InputError


@dataclass(frozen=True)
class Metric:
    """``columns``: the row columns it fills; ``table``: ``(row column, header, format)`` of its
    Table 1 column (None: not in Table 1); ``package``: the optional package it needs (with weight
    files placed by hand; None: nothing); ``reference``: compares with the sharp image (False: a
    no-reference score); ``function``: ``"module:name"`` of the plain function computing a suite
    metric that loads nothing (imported when the suite is built)."""

    name: str
    columns: tuple[str, ...]
    table: tuple[str, str, str] | None
    higher_is_better: bool
    package: str | None = None
    source: str = "suite"
    reference: bool = True
    function: str | None = None

    @property
    def weights(self) -> bool:
        """Whether it needs an optional package and weight files."""
        return self.package is not None

    @property
    def selectable(self) -> bool:
        """Whether a config chooses it in ``metrics:`` (the others are always computed)."""
        return self.source in ("suite", "set")


METRICS: tuple[Metric, ...] = (
    Metric("psnr", ("psnr",), ("psnr", "PSNR", "{:.2f}"), True, function="fdem.metrics.fidelity:psnr"),
    Metric("ssim", ("ssim",), ("ssim", "SSIM", "{:.3f}"), True, function="fdem.metrics.fidelity:ssim"),
    Metric("psnr_aligned", ("psnr_aligned",), ("psnr_aligned", "PSNR aligned", "{:.2f}"), True,
           function="fdem.metrics.fidelity:aligned_psnr"),
    Metric("lpips", ("lpips",), ("lpips", "LPIPS", "{:.3f}"), False, package="lpips"),
    Metric("fid", (), ("fid", "FID", "{:.2f}"), False, package="pytorch_fid", source="set"),
    Metric("niqe", ("niqe",), ("niqe", "NIQE", "{:.2f}"), False, package="pyiqa", reference=False),
    Metric("brisque", ("brisque",), ("brisque", "BRISQUE", "{:.2f}"), False, package="pyiqa", reference=False),
    Metric("kernel_mse", ("kernel_mse",), ("kernel_mse", "kernel MSE", "{:.2e}"), False, source="kernel"),
    Metric("reblur", ("reblur", "reblur_per_pixel"), ("reblur_per_pixel", "L_reblur", "{:.2e}"), False, source="kernel"),
    Metric("psnr_sa", ("psnr_sa",), None, True, source="mean"),
)
REGISTRY = {m.name: m for m in METRICS}


def selectable_names() -> tuple[str, ...]:
    """The names a config may list in ``metrics:`` (also the default list): per-image ones, then set ones."""
    return suite_names() + tuple(m.name for m in METRICS if m.source == "set")


def suite_names() -> tuple[str, ...]:
    """The per-image metrics of the suite."""
    return tuple(m.name for m in METRICS if m.source == "suite")


def row_columns() -> tuple[str, ...]:
    """Every metric column of a benchmark row, in registry order."""
    return tuple(c for m in METRICS for c in m.columns)


def table_columns() -> tuple[tuple[str, str, str], ...]:
    """``(row column, header, format)`` of every metric in Table 1, in registry order."""
    return tuple(m.table for m in METRICS if m.table is not None)


def checked_names() -> tuple[str, ...]:
    """What ``fdem metrics check`` lists: the metrics that need nothing first, then the optional ones."""
    named = [m for m in METRICS if m.source != "mean"]
    return tuple(m.name for m in named if not m.weights) + tuple(m.name for m in named if m.weights)


def check_selection(names) -> tuple[str, ...]:
    """``names`` (a config's ``metrics:``) if every one is selectable; else an InputError naming the valid ones."""
    names = tuple(names)
    unknown = [n for n in names if n not in selectable_names()]
    if unknown:
        raise InputError(f"unknown metric(s) {', '.join(unknown)}: valid names are {', '.join(selectable_names())}")
    return names
