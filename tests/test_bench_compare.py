"""The bench config's ``compare: {input, oracle}``: the comparison table (gain over the input,
blind penalty against the oracle, images below the input, paired by sample index), its markdown,
and the config check of the labels."""

import math

import pandas as pd
import pytest
import yaml

from fdem.benchmarks.rows import RowFile, merge_rows
from fdem.benchmarks.tables import compare_markdown, compare_table, write_tables
from fdem.cli import main
from tests.test_bench_rows import _row

INPUT, ORACLE = "blurry input (Dirac kernel)", "pigdm (true kernel)"
# (method, index, σ, PSNR): index 0-1 at σ 5, 2-3 at σ 10; "blind" has no row for index 3, and
# its index 9 has no input row (unpaired: ignored)
PSNRS = [(INPUT, 0, 5, 20.0), (INPUT, 1, 5, 22.0), (INPUT, 2, 10, 18.0), (INPUT, 3, 10, 19.0),
         ("blind", 0, 5, 23.0), ("blind", 1, 5, 21.0), ("blind", 2, 10, 20.0), ("blind", 9, 10, 40.0),
         (ORACLE, 0, 5, 25.0), (ORACLE, 1, 5, 24.0), (ORACLE, 2, 10, 21.0), (ORACLE, 3, 10, 22.0)]


def _rows() -> pd.DataFrame:
    rows = pd.DataFrame([_row(m, i, p, sigma=s) for m, i, s, p in PSNRS])
    rows["preset"] = ["paper" if m == ORACLE else "" for m, *_ in PSNRS]
    return rows


def test_gain_penalty_and_below_input_are_paired_by_sample():
    table = compare_table(_rows(), INPUT, ORACLE).set_index(["method", "sigma255"])
    blind5, blind10, pooled = (table.loc[("blind", s)] for s in ("5", "10", "all"))
    assert blind5["images"] == 2 and blind5["psnr"] == 22.0 and blind5["ssim"] == 0.5
    assert blind5["gain_db"] == 1.0 and blind5["penalty_db"] == 2.5  # (3 - 1) / 2, (2 + 3) / 2
    assert blind5["below_input"] == 1 and blind5["below_input_frac"] == 0.5
    assert blind10["images"] == 1 and blind10["gain_db"] == 2.0 and blind10["penalty_db"] == 1.0  # index 9 ignored
    assert pooled["images"] == 3 and pooled["gain_db"] == pytest.approx(4 / 3) and pooled["penalty_db"] == 2.0
    assert pooled["below_input"] == 1 and pooled["below_input_frac"] == pytest.approx(1 / 3)
    assert table.loc[(INPUT, "all"), "gain_db"] == 0 and table.loc[(INPUT, "all"), "images"] == 4
    assert table.loc[(ORACLE, "all"), "penalty_db"] == 0 and table.loc[(ORACLE, "all"), "gain_db"] == 3.25
    assert table.loc[(ORACLE, "5"), "preset"] == "paper" and math.isnan(blind5["kernel_mse"])
    assert list(table.index.get_level_values(0).unique()) == [INPUT, "blind", ORACLE]  # config order


def test_without_oracle_the_penalty_is_nan_and_without_input_rows_the_table_is_empty():
    table = compare_table(_rows(), INPUT)
    assert table["penalty_db"].isna().all() and not table["gain_db"].isna().any()
    assert compare_table(_rows(), "not run").empty


def test_markdown_has_a_section_per_sigma_and_the_counts():
    md = compare_markdown(compare_table(_rows(), INPUT, ORACLE))
    assert "**σ = 5/255**" in md and "**σ = 10/255**" in md and "**pooled over σ**" in md
    assert "| method | preset | images | PSNR | SSIM | kernel MSE | gain over input (dB) | blind penalty (dB) | below input |" in md
    assert "| blind | – | 2 | 22.00 | 0.500 | – | +1.00 | +2.50 | 1 / 2 |" in md


def test_aligned_psnr_gets_its_own_gain_and_penalty_when_the_rows_have_it():
    rows = _rows()
    rows["psnr_aligned"] = rows["psnr"] + [0.0 if m != "blind" else 1.0 for m, *_ in PSNRS]
    table = compare_table(rows, INPUT, ORACLE).set_index(["method", "sigma255"])
    blind5 = table.loc[("blind", "5")]
    assert blind5["psnr_aligned"] == 23.0 and blind5["gain_aligned_db"] == 2.0 and blind5["penalty_aligned_db"] == 1.5
    assert blind5["gain_db"] == 1.0 and blind5["below_input"] == 1  # the plain columns unchanged
    md = compare_markdown(compare_table(rows, INPUT, ORACLE))
    assert "| below input | PSNR aligned | gain aligned (dB) | penalty aligned (dB) |" in md
    assert "psnr_aligned" not in compare_table(_rows(), INPUT, ORACLE)


def test_write_tables_writes_the_comparison_when_asked(tmp_path):
    f = RowFile(tmp_path / "rows" / "rank0.csv")
    for row in _rows().to_dict("records"):
        f.append(row)
    f.close()
    merge_rows(tmp_path, [INPUT, "blind", ORACLE])
    assert "compare.md" not in write_tables(tmp_path, "test")
    written = write_tables(tmp_path, "test", {"input": INPUT, "oracle": ORACLE})
    assert "| blind | – | 3 |" in written["compare.md"].read_text()
    assert len(pd.read_csv(written["compare.csv"])) == 3 * 3


@pytest.mark.parametrize("compare, message", [
    ({"input": "blurry", "oracle": "pigdm"}, "compare: oracle: 'pigdm' is not a method label; valid: 'blurry', 'l0-anger (fast)'"),
    ({"oracle": "blurry"}, "compare: expected a mapping with input (required) and oracle"),
    ({"input": "blurry", "best": "blurry"}, "compare: expected a mapping with input (required) and oracle"),
])
def test_bad_compare_is_one_error_line_and_exit_2(tmp_path, capsys, compare, message):
    cfg = {"out": str(tmp_path / "out"), "data": {"images": "bundled"}, "compare": compare,
           "methods": ["blurry", {"method": "l0-anger", "label": "l0-anger (fast)"}]}
    config = tmp_path / "bench.yaml"
    config.write_text(yaml.safe_dump(cfg))
    with pytest.raises(SystemExit) as info:
        main(["bench", "--config", str(config), "--no-progress"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_compare_accepts_default_labels(tmp_path):
    from fdem.benchmarks.run import BenchConfig

    cfg = {"out": str(tmp_path / "out"), "data": {}, "compare": {"input": "blurry", "oracle": "pigdm (photo)"},
           "methods": ["blurry", {"method": "pigdm", "options": {"preset": "photo"}}]}
    (tmp_path / "bench.yaml").write_text(yaml.safe_dump(cfg))
    assert BenchConfig.from_yaml(tmp_path / "bench.yaml").compare == cfg["compare"]
