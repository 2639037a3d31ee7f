"""Benchmark rows on disk: one CSV per process, appended and flushed row by row, merged at the end.

A row is one (method, sample) pair; its key is ``(method, index)`` where ``method`` is the
method's label in the config and ``index`` the sample index of the data module. A killed run
leaves complete rows (a torn last line is dropped when the file is reopened), and a rerun skips
every key found in any of the files, so no finished row is lost or computed twice.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable

from fdem.io_utils import atomic_write_text

COLUMNS = (
    "method", "method_name", "params", "index", "image_id", "kernel_id", "sigma255", "seed",
    "seconds", "psnr", "ssim", "lpips", "niqe", "brisque", "kernel_mse", "reblur", "reblur_per_pixel", "psnr_sa",
)
KEY = ("method", "index")
RANK_FOLDER = "rows"
MERGED = "rows.csv"


def _format(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    return str(value)


def _complete_lines(path: Path) -> str:
    """The file's text up to its last newline (a row torn by a kill is dropped)."""
    text = path.read_text() if path.is_file() else ""
    return text[: text.rfind("\n") + 1]


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of one CSV written by :class:`RowFile` (or the merged file) as dicts of strings."""
    text = _complete_lines(path)
    if not text:
        return []
    rows = csv.DictReader(io.StringIO(text))
    return [r for r in rows if None not in r and all(r.get(c) is not None for c in COLUMNS)]


def row_key(row: dict) -> tuple[str, int]:
    return str(row["method"]), int(row["index"])


class RowFile:
    """Append-only CSV of one process: the header once, then one flushed line per row."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = _complete_lines(path)
        if kept != (path.read_text() if path.is_file() else ""):
            path.write_text(kept)  # drop a torn last line before appending
        self._file = open(path, "a", newline="")
        if not kept:
            self._write_line(list(COLUMNS))

    def _write_line(self, values: list[str]) -> None:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerow(values)
        self._file.write(buffer.getvalue())
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, row: dict) -> None:
        self._write_line([_format(row.get(c)) for c in COLUMNS])

    def close(self) -> None:
        self._file.close()


def all_rows(out: Path) -> list[dict[str, str]]:
    """Every complete row found under ``out`` (merged file first, then each process's file),
    without duplicate keys (the first occurrence wins)."""
    files = [out / MERGED] + sorted((out / RANK_FOLDER).glob("*.csv"))
    seen, rows = set(), []
    for path in files:
        for row in read_rows(path):
            key = row_key(row)
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return rows


def done_keys(out: Path) -> set[tuple[str, int]]:
    return {row_key(r) for r in all_rows(out)}


def merge_rows(out: Path, method_order: Iterable[str]) -> Path:
    """Write ``out/rows.csv``: all rows, sorted by the config's method order then sample index."""
    order = {m: i for i, m in enumerate(method_order)}
    rows = sorted(all_rows(out), key=lambda r: (order.get(r["method"], len(order)), r["method"], int(r["index"])))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows({c: r[c] for c in COLUMNS} for r in rows)
    atomic_write_text(out / MERGED, buffer.getvalue())
    return out / MERGED
