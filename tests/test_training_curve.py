"""The loss-curve plot of a `fdem fit` CSV log."""

import pytest

from fdem.benchmarks.training_curve import plot_curve
from fdem.errors import InputError


def test_plot_curve_writes_a_png(tmp_path):
    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss,val/loss\n0,9,0.5,\n0,19,0.4,\n0,19,,0.45\n0,29,0.3,\n")
    out = plot_curve(log, tmp_path / "curve.png", window=2)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_curve_refuses_other_files(tmp_path):
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a `fdem fit` CSV log"):
        plot_curve(other, tmp_path / "x.png")
    with pytest.raises(InputError, match="not found"):
        plot_curve(tmp_path / "missing.csv", tmp_path / "x.png")
