"""Row files (torn lines, resume keys, merge) and the table/plot aggregation of the harness."""

import json
import math

import pandas as pd
import pytest

from fdem.benchmarks.rows import COLUMNS, RowFile, all_rows, done_keys, merge_rows, read_rows
from fdem.benchmarks.tables import pareto_front, table1, table1_markdown, table2, write_tables


def _row(method: str, index: int, psnr: float, sigma: float = 10.0, seconds: float = 1.0, particles: int = 1) -> dict:
    row = {c: float("nan") for c in COLUMNS}
    row.update(method=method, method_name=method.split(" ")[0], params=json.dumps({"particles": particles}),
               index=index, image_id=f"img{index}", kernel_id=index, sigma255=sigma, seed=index,
               seconds=seconds, psnr=psnr, psnr_sa=psnr + 0.5, ssim=0.5)
    return row


def test_torn_last_line_is_dropped_and_appending_continues(tmp_path):
    path = tmp_path / "rows" / "rank0.csv"
    f = RowFile(path)
    f.append(_row("a", 0, 20.0))
    f.close()
    with open(path, "a") as handle:
        handle.write("a,a,{},1,img1")  # a row torn by a kill: no newline
    f = RowFile(path)
    f.append(_row("a", 2, 22.0))
    f.close()
    assert [int(r["index"]) for r in read_rows(path)] == [0, 2]


def test_merge_deduplicates_across_process_files_and_orders_by_config(tmp_path):
    for rank, rows in enumerate([[_row("b", 1, 1.0), _row("a", 1, 2.0)], [_row("a", 0, 3.0), _row("a", 1, 9.0)]]):
        f = RowFile(tmp_path / "rows" / f"rank{rank}.csv")
        for r in rows:
            f.append(r)
        f.close()
    assert done_keys(tmp_path) == {("a", 0), ("a", 1), ("b", 1)}
    merged = pd.read_csv(merge_rows(tmp_path, ["a", "b"]))
    assert list(zip(merged["method"], merged["index"])) == [("a", 0), ("a", 1), ("b", 1)]
    assert merged.loc[1, "psnr"] == 2.0  # the first copy of a key wins
    assert len(all_rows(tmp_path)) == 3  # the merged file itself adds no duplicate


def test_pareto_front_keeps_only_unbeaten_points():
    points = [(1.0, 20.0), (2.0, 19.0), (3.0, 25.0), (10.0, 24.0), (0.5, 10.0)]
    assert pareto_front(points) == [4, 0, 2]


def test_table1_means_stds_and_pooled_rows():
    rows = pd.DataFrame([_row("m", i, p, sigma=s) for i, (p, s) in enumerate([(20, 5), (22, 5), (30, 10), (30, 10)])])
    rows["particles"] = 1
    t = table1(rows, fid={("m", "5"): 12.5})
    by_sigma = t.set_index("sigma255")
    assert by_sigma.loc["5", "psnr_mean"] == 21 and by_sigma.loc["5", "psnr_std"] == 1
    assert by_sigma.loc["all", "psnr_mean"] == 25.5 and by_sigma.loc["all", "images"] == 4
    assert by_sigma.loc["5", "fid_mean"] == 12.5 and math.isnan(by_sigma.loc["10", "fid_mean"])
    md = table1_markdown(t)
    assert "21.00 ± 1.00" in md and "pooled over σ" in md and "LPIPS" not in md  # all-NaN columns dropped


def test_table2_groups_em_methods_by_particles():
    rows = pd.DataFrame([_row("fastem-pigdm", 0, 20), _row("fastem-pigdm n=4", 0, 21, particles=4), _row("pigdm", 0, 30)])
    rows["particles"] = [1, 4, 1]
    t = table2(rows)
    assert list(t["particles"]) == [1, 4] and list(t["psnr_sa"]) == [20.5, 21.5]


def test_write_tables_makes_csv_markdown_and_plots(tmp_path):
    f = RowFile(tmp_path / "rows" / "rank0.csv")
    for i, (m, s) in enumerate([("fast", 1.0), ("slow", 10.0)] * 2):
        row = _row(m, i, 20.0 + i, seconds=s)
        row["kernel_mse"] = 1e-5 * (i + 1)
        f.append(row)
    f.close()
    merge_rows(tmp_path, ["fast", "slow"])
    written = write_tables(tmp_path, "test")
    assert set(written) == {"table1.csv", "table1.md", "table2.csv", "pareto.png", "kernel_mse.png"}
    assert all(p.stat().st_size > 0 for p in written.values())


@pytest.mark.parametrize("bad", ["", "x\n"])
def test_read_rows_of_empty_or_headerless_files(tmp_path, bad):
    path = tmp_path / "r.csv"
    path.write_text(bad)
    assert read_rows(path) == []
