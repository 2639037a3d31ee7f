"""The scripts in examples/ run as a researcher would run them (tiny settings) and print what they promise."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, cwd: Path) -> str:
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def numbers(pattern: str, text: str) -> list[float]:
    match = re.search(pattern, text)
    assert match, text[-1000:]
    return [float(g) for g in match.groups()]


def test_deblur_tensor_prints_psnrs_and_the_preset(tmp_path):
    out = run_example("deblur_tensor.py", "--preset", "few-step", "--steps", "3", "--size", "32", cwd=tmp_path)
    assert "'preset': 'few-step'" in out and "'steps': 3" in out
    blurry, restored, mse = numbers(r"blurry ([\d.]+) dB -> restored ([\d.]+) dB, kernel MSE ([\d.e-]+)", out)
    assert 5 < blurry < 60 and 0 < restored < 60 and 0 <= mse < 1  # 3 steps at 32²: runs, not good


def test_fastem_step_by_step_traces_every_step(tmp_path):
    out = run_example("fastem_step_by_step.py", "--steps", "4", "--size", "32", "--out", "t.png", cwd=tmp_path)
    assert len(re.findall(r"^step +\d+/4", out, flags=re.M)) == 4
    assert (tmp_path / "t.png").read_bytes()[:4] == b"\x89PNG"


def test_fit_kernel_denoiser_writes_weights_that_load(tmp_path):
    out = run_example("fit_kernel_denoiser.py", "--steps", "3", "--size", "9", "--out", "d.pt", cwd=tmp_path)
    ours, dirac = numbers(r"kernel MSE ([\d.e-]+) \(a Dirac: ([\d.e-]+)\)", out)
    assert (tmp_path / "d.pt").is_file() and ours >= 0 and dirac > 0


@pytest.mark.timeout(600)
def test_bench_programmatic_writes_rows_tables_and_pictures(tmp_path):
    out = run_example("bench_programmatic.py", "--out", "bench", "--steps", "2", cwd=tmp_path)
    assert "fastem-pigdm (few-step)" in out and "alternation" in out
    for name in ("rows.csv", "table1.md", "pareto.png", "comparison.png", "manifest.json"):
        assert (tmp_path / "bench" / name).is_file(), name
    resolved = json.loads((tmp_path / "bench" / "manifest.json").read_text())["resolved_options"]
    assert resolved["fastem-pigdm (few-step)"]["preset"] == "few-step" and resolved["fastem-pigdm (few-step)"]["steps"] == 2
    rows = (tmp_path / "bench" / "rows.csv").read_text().splitlines()
    assert rows[0].split(",")[2] == "preset" and sum(",few-step," in r for r in rows) == 2
    table = (tmp_path / "bench" / "table1.md").read_text()
    assert "| fastem-pigdm (few-step) | few-step | 2 |" in table and "| alternation | – | 2 |" in table
