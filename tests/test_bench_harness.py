"""`fdem bench`: 1 vs 2 processes give the same rows, kill + rerun loses and duplicates nothing,
bad input fails clearly (or, for a corrupt image, is skipped and recorded)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from fdem.benchmarks.rows import read_rows
from fdem.cli import main
from tests.test_sampling import tiny_unet

UNET = dict(image_size=16, model_channels=32, channel_mult=[1, 1], attention_resolutions=[], num_head_channels=32)
RESULT_COLUMNS = ["method", "index", "image_id", "kernel_id", "sigma255", "seed", "psnr", "ssim", "kernel_mse", "psnr_sa"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    torch.save(tiny_unet(**UNET).state_dict(), root / "prior.pt")
    (root / "prior.yaml").write_text(yaml.safe_dump(UNET))
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(images / f"{i:05d}.png")
    return root


def _config(root: Path, out: Path, steps: int = 3, **data) -> Path:
    prior = {"prior": str(root / "prior.pt"), "prior_config": str(root / "prior.yaml"), "steps": steps, "kernel_size": 5}
    cfg = {
        "title": "test", "out": str(out),
        "data": {"images": str(root / "images"), "size": 16, "kernels": "camera-shake", "kernel_size": 5,
                 "sigmas": [5, 10], **data},
        "methods": [{"method": "fastem-pigdm", "options": prior}, {"method": "alternation", "options": {"kernel_size": 5}}],
        "metrics": ["psnr", "ssim"],
        "trainer": {"accelerator": "cpu"},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _fdem(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "fdem.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=Path(__file__).parents[1])


def _rows(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "rows.csv")[RESULT_COLUMNS]


def test_two_ddp_processes_give_the_rows_of_one(setup, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    first = _fdem("bench", "--config", str(_config(setup, one)), "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    second = _fdem("bench", "--config", str(_config(setup, two)), "--devices", "2", "--strategy", "ddp", "--no-progress")
    assert second.returncode == 0, second.stderr[-2000:]
    assert sorted(p.name for p in (two / "rows").iterdir()) == ["rank0.csv", "rank1.csv"]
    a, b = _rows(one), _rows(two)
    assert len(a) == 2 * 6  # 2 methods × 3 images × 2 σ
    pd.testing.assert_frame_equal(a, b)
    for name in ("table1.csv", "table1.md", "table2.csv", "pareto.png", "kernel_mse.png", "manifest.json"):
        assert (two / name).stat().st_size > 0


def test_killed_run_resumes_without_losing_or_duplicating_rows(setup, tmp_path):
    out = tmp_path / "run"
    config = _config(setup, out, steps=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "fdem.cli", "bench", "--config", str(config), "--no-progress"],
                            env=env, cwd=Path(__file__).parents[1], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rank0 = out / "rows" / "rank0.csv"
    deadline = time.time() + 240
    while time.time() < deadline and len(read_rows(rank0)) < 2 and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_rows(rank0)
    assert 2 <= len(before) < 12, "the run must be killed midway"
    done = _fdem("bench", "--config", str(config), "--no-progress")
    assert done.returncode == 0, done.stderr[-2000:]
    rows = pd.read_csv(out / "rows.csv")
    assert len(rows) == 12 and not rows.duplicated(["method", "index"]).any()
    kept = {(r["method"], int(r["index"])): float(r["psnr"]) for r in before}
    again = {(m, int(i)): p for m, i, p in zip(rows["method"], rows["index"], rows["psnr"])}
    assert all(again[key] == value for key, value in kept.items())  # finished rows were kept, not recomputed


def _run(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    return info.value.code, capsys.readouterr().err


def _drop_column(path: Path, column: str, keep_rows: int | None = None) -> None:
    """Rewrite a rows CSV as an older run would have written it: without ``column`` (and its first rows only)."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False).drop(columns=[column])
    frame.iloc[:keep_rows].to_csv(path, index=False, lineterminator="\n")


def test_resuming_a_run_whose_rows_lack_a_column(setup, tmp_path):
    """Rows written before a metric column existed are kept (the cell empty), the missing rows are
    computed, and every file gets the current columns."""
    out = tmp_path / "old"
    config = _config(setup, out, sigmas=[5])
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    fresh = pd.read_csv(out / "rows.csv")
    _drop_column(out / "rows" / "rank0.csv", "brisque", keep_rows=2)
    _drop_column(out / "rows.csv", "brisque", keep_rows=2)
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    rows = pd.read_csv(out / "rows.csv")
    assert list(rows.columns) == list(fresh.columns) and len(rows) == len(fresh) == 3
    pd.testing.assert_frame_equal(rows[RESULT_COLUMNS], fresh[RESULT_COLUMNS])
    assert rows["brisque"].isna().all()
    assert list(pd.read_csv(out / "rows" / "rank0.csv").columns) == list(fresh.columns)


def test_corrupt_image_is_skipped_and_recorded(setup, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for p in (setup / "images").iterdir():
        (images / p.name).write_bytes(p.read_bytes())
    (images / "00001.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = tmp_path / "out"
    config = _config(setup, out, steps=2, images=str(images), sigmas=[5])
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    skipped = pd.read_csv(out / "skipped.csv")
    assert list(skipped["path"]) == [str(images / "00001.png")]
    assert sorted(pd.read_csv(out / "rows.csv", dtype={"image_id": str})["image_id"]) == ["00000", "00002"]


@pytest.mark.parametrize("problem, message", [
    ("missing folder", "image folder not found"),
    ("unknown method", "unknown method 'nope'"),
    ("unwritable out", "not writable"),
    ("unknown option", "unknown option"),
    ("missing prior", "prior file not found"),
])
def test_bad_input_is_one_clear_error(setup, tmp_path, capsys, problem, message):
    out = tmp_path / "out"
    config = _config(setup, out)
    cfg = yaml.safe_load(config.read_text())
    if problem == "missing folder":
        cfg["data"]["images"] = str(tmp_path / "nowhere")
    elif problem == "unknown method":
        cfg["methods"].append("nope")
    elif problem == "unwritable out":
        blocker = tmp_path / "file"
        blocker.write_text("x")
        cfg["out"] = str(blocker / "out")
    elif problem == "unknown option":
        cfg["methods"][1]["options"]["particles"] = 3
    else:
        cfg["methods"][0]["options"]["prior"] = str(tmp_path / "none.pt")
    config.write_text(yaml.safe_dump(cfg))
    code, err = _run(["bench", "--config", str(config), "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / "rows.csv").exists()


@pytest.mark.parametrize("name", ["demo.yaml", "table1.yaml", "table2.yaml", "ddp_scaling.yaml"])
def test_shipped_bench_configs_parse(name):
    """Every method entry of the shipped benchmark configs names a method and options it takes
    (files in the paper configs are the user's to provide, so only names and options are checked)."""
    from fdem.benchmarks.module import FILE_OPTIONS, parse_methods
    from fdem.benchmarks.run import BenchConfig

    cfg = BenchConfig.from_yaml(Path(__file__).parents[1] / "configs" / "bench" / name)
    entries = [{**e, "options": {k: v for k, v in (e.get("options") or {}).items() if k not in FILE_OPTIONS}}
               if isinstance(e, dict) else e for e in cfg.methods]
    assert len(parse_methods(entries)) == len(cfg.methods)


def test_config_restorer_options_reach_the_method():
    from fdem.benchmarks.module import MethodSpec
    from fdem.errors import InputError

    spec = MethodSpec("selfdeblur", {"kernel_size": 17, "iters": 50})
    assert spec.options["iters"] == 50
    with pytest.raises(InputError, match=r"unknown option\(s\) \['iter'\]; valid: kernel_size, iters"):
        MethodSpec("selfdeblur", {"iter": 50})
