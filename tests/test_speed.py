"""``fdem speed`` and :mod:`benchmarks.speed` on a tiny UNet (a few seconds)."""

import csv

import pytest
import yaml

from benchmarks.speed import markdown_table, run_speed
from fdem.cli import main

TINY = dict(image_size=32, model_channels=32, channel_mult=[1, 2], attention_resolutions=[8], num_head_channels=32)


def test_run_speed_rows():
    rows = run_speed(
        ["fastem-pigdm", "pigdm"], TINY, 32, [1, 2], steps=3, repeats=1, warmup=0, progress=False
    )
    assert [(r["method"], r["batch"]) for r in rows] == [("fastem-pigdm", 1), ("fastem-pigdm", 2), ("pigdm", 1), ("pigdm", 2)]
    for r in rows:
        assert r["sec_per_call"] > 0 and r["images_per_sec"] > 0
        assert r["sec_per_image"] == pytest.approx(r["sec_per_call"] / r["batch"])
        assert (r["steps"], r["default_steps"], r["net_calls"]) == (3, 100, 3)
        assert (r["particles"], r["image_size"], r["kernel_size"], r["unet"]) == (1, 32, 17, "custom")
        assert r["params"] > 0 and r["threads"] == 1 and r["device"] == "cpu"
        assert r["device_name"] and r["torch"]
    table = markdown_table(rows)
    assert table.count("\n| ") == 1 + len(rows) and "3 (default 100)" in table


def test_cli_writes_csv(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "speed.csv"
    main(["speed", "--unet", str(config), "--size", "32", "--methods", "pigdm", "--batch", "1",
          "--steps", "2", "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(out)])  # returns: exit 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["unet"] == "tiny" and rows[0]["steps"] == "2"
    printed = capsys.readouterr().out
    assert "| pigdm | 2 (default 100) | 1 | 1 |" in printed and str(out) in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "pigdm,fastem-foo"], "unknown method"),
        (["--unet", "huge"], "unknown UNet config"),
        (["--batch", "1,0"], "batch"),
        (["--batch", "1,x"], "--batch"),
        (["--size", "60"], "multiple of 8"),
        (["--steps", "1"], "steps"),
        (["--threads", "0"], "threads"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["speed", "--out", str(tmp_path / "s.csv"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fdem: error:") and message in err[0]
    assert not (tmp_path / "s.csv").exists()
