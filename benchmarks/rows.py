"""Benchmark rows on disk: one CSV per process, appended and flushed row by row, merged at the end.

A row is one (method, sample) pair; its key is ``(method, index)`` where ``method`` is the
method's label in the config and ``index`` the sample index of the data module. A killed run
leaves complete rows (a torn last line is dropped when the file is reopened), and a rerun skips
every key found in any of the files, so no finished row is lost or computed twice. The metric
columns come from :mod:`fdem.metrics.registry`; a file written with fewer columns (an older run)
reads with those cells empty, and is rewritten with the current header before rows are appended.
"""

from __future__ import annotations

import csv
import io
import math
import os
from pathlib import Path
from typing import Iterable

from fdem.io_utils import atomic_write_text
from fdem.metrics.registry import row_columns

COLUMNS = ("method", "method_name", "preset", "params", "index", "image_id", "kernel_id", "sigma255", "seed", "threads", "seconds",
           *row_columns())
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
    """Rows of one CSV written by :class:`RowFile` (or the merged file) as dicts of strings with
    every column of :data:`COLUMNS` (empty where the file has no such column); lines with too
    few or too many cells, and files without the key columns, give no rows."""
    text = _complete_lines(path)
    if not text:
        return []
    reader = csv.DictReader(io.StringIO(text))
    header = reader.fieldnames or []
    if not set(KEY) <= set(header):
        return []
    return [{c: r.get(c, "") for c in COLUMNS} for r in reader if None not in r and None not in r.values()]


def row_key(row: dict) -> tuple[str, int]:
    return str(row["method"]), int(row["index"])


class RowFile:
    """Append-only CSV of one process: the header once, then one flushed line per row."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        kept = _complete_lines(path)
        if kept and kept.partition("\n")[0] != ",".join(COLUMNS):
            kept = _as_csv(read_rows(path))  # an older header: rewrite with the current columns
            atomic_write_text(path, kept)
        elif kept != (path.read_text() if path.is_file() else ""):
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


def recorded_params(out: Path) -> dict[str, set[str]]:
    """Each label's ``params`` records (the resolved options its rows were made with) found under ``out``."""
    found: dict[str, set[str]] = {}
    for row in all_rows(out):
        found.setdefault(str(row["method"]), set()).add(row["params"])
    return found


def merge_rows(out: Path, method_order: Iterable[str]) -> Path:
    """Write ``out/rows.csv``: all rows, sorted by the config's method order then sample index."""
    order = {m: i for i, m in enumerate(method_order)}
    rows = sorted(all_rows(out), key=lambda r: (order.get(r["method"], len(order)), r["method"], int(r["index"])))
    atomic_write_text(out / MERGED, _as_csv(rows))
    return out / MERGED


def _as_csv(rows: list[dict[str, str]]) -> str:
    """The CSV text of ``rows`` (dicts with every column) under the current header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()
