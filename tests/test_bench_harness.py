"""`fdem bench`: 1 vs 2 processes give the same rows, kill + rerun loses and duplicates nothing,
bad input fails clearly (or, for a corrupt image, is skipped and recorded)."""

import json
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
    """``fdem`` in a subprocess with the default thread settings (no OMP_NUM_THREADS)."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return subprocess.run([sys.executable, "-m", "fdem.cli", *args], capture_output=True, text=True,
                          env={**env, "PYTHONWARNINGS": "ignore"}, timeout=timeout, cwd=Path(__file__).parents[1])


def _classical_config(out: Path) -> Path:
    """l0-anger and the Wiener + M-step alternation on 3 bundled photographs at 64², 2 σ: 12 rows.
    Thread count changes the alternation's rows by ~1e-6 dB (1 vs 2 threads), so only exactly
    equal threads give exactly equal rows."""
    cfg = {
        "title": "test", "out": str(out),
        "data": {"images": "bundled", "num_images": 3, "size": 64, "kernels": "camera-shake", "kernel_size": 9,
                 "sigmas": [5, 20]},
        "methods": [{"method": "l0-anger", "options": {"kernel_size": 9}},
                    {"method": "alternation", "options": {"kernel_size": 9}}],
        "metrics": ["psnr", "ssim"], "trainer": {"accelerator": "cpu"},
    }
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_two_ddp_processes_give_the_rows_of_one(tmp_path):
    """Default thread settings: the config's thread count (1) in every process, so the rows are
    exactly equal, every metric column; the thread count is in the rows and the manifest."""
    one, two = tmp_path / "one", tmp_path / "two"
    first = _fdem("bench", "--config", str(_classical_config(one)), "--no-progress")
    assert first.returncode == 0, first.stderr[-2000:]
    second = _fdem("bench", "--config", str(_classical_config(two)), "--devices", "2", "--strategy", "ddp",
                   "--no-progress")
    assert second.returncode == 0, second.stderr[-2000:]
    assert sorted(p.name for p in (two / "rows").iterdir()) == ["rank0.csv", "rank1.csv"]
    columns = [*RESULT_COLUMNS, "threads", "reblur", "reblur_per_pixel"]
    a, b = pd.read_csv(one / "rows.csv")[columns], pd.read_csv(two / "rows.csv")[columns]
    assert len(a) == 2 * 6 and (a["threads"] == 1).all()
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    for out in (one, two):
        assert json.loads((out / "manifest.json").read_text())["threads"]["intra_op"] == 1
    for name in ("table1.csv", "table1.md", "table2.csv", "pareto.png", "kernel_mse.png", "comparison.png"):
        assert (two / name).stat().st_size > 0
    stored = sorted(p.relative_to(two).as_posix() for p in (two / "comparison").rglob("*.npz"))
    assert stored == sorted(p.relative_to(one).as_posix() for p in (one / "comparison").rglob("*.npz"))
    assert len(stored) == 3 * 4  # the sample and 2 methods, for 4 of the 6 samples (each process wrote its own)


def test_killed_run_resumes_without_losing_or_duplicating_rows(setup, tmp_path):
    out = tmp_path / "run"
    config = _config(setup, out, steps=40)
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop("OMP_NUM_THREADS", None)
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


def test_resuming_a_run_whose_rows_lack_a_column(setup, tmp_path, capsys, monkeypatch):
    """Rows written before a metric column existed are kept (the cell empty), the missing rows are
    computed, and every file gets the current columns. The resumed run says how many rows it
    skipped, and no run warns about a metric the config does not ask for (psnr, ssim only)."""
    import fdem.metrics.suite

    reported = []
    monkeypatch.setattr(fdem.metrics.suite, "report_unavailable", lambda name, reason: reported.append(name))
    out = tmp_path / "old"
    config = _config(setup, out, sigmas=[5])
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    assert "rows already in" not in capsys.readouterr().out
    fresh = pd.read_csv(out / "rows.csv")
    _drop_column(out / "rows" / "rank0.csv", "brisque", keep_rows=2)
    _drop_column(out / "rows.csv", "brisque", keep_rows=2)
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    assert "resuming: 2 of 3 rows already in" in capsys.readouterr().out
    assert reported == []
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


@pytest.mark.parametrize("change, message", [("options", "were made with alternation"),
                                             ("seeding", "samplers were seeded otherwise")])
def test_resuming_under_other_settings_is_refused(setup, tmp_path, capsys, change, message):
    """A finished row is skipped on rerun, so rows of other method settings (same label) or of the
    old sampler seeding must not be resumed: one error line, exit 2, the rows untouched."""
    out = tmp_path / "out"
    config = _config(setup, out, sigmas=[5])
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    before = (out / "rows.csv").read_text()
    capsys.readouterr()
    if change == "options":
        cfg = yaml.safe_load(config.read_text())
        cfg["methods"][1]["options"]["rounds"] = 2
        config.write_text(yaml.safe_dump(cfg))
    else:  # the record an fdem bench of before the seeding fix wrote: the bare data settings
        record = out / "bench_data.json"
        record.write_text(json.dumps(json.loads(record.read_text())["data"]))
    code, err = _run(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert (out / "rows.csv").read_text() == before


def test_resuming_with_a_default_pinned_is_accepted(setup, tmp_path, capsys):
    """Options that spell out a default resolve to the run the rows record: the rows are resumed, not refused;
    a pinned value that is not the default still is refused."""
    out = tmp_path / "out"
    config = _config(setup, out, sigmas=[5])
    main(["bench", "--config", str(config), "--no-progress", "--methods", "alternation"])
    cfg = yaml.safe_load(config.read_text())
    argv = ["bench", "--config", str(config), "--no-progress", "--methods", "alternation"]
    cfg["methods"][1]["options"]["rounds"] = 30  # alternation's default
    config.write_text(yaml.safe_dump(cfg))
    capsys.readouterr()
    main(argv)
    assert "resuming: 3 of 3 rows already in" in capsys.readouterr().out
    cfg["methods"][1]["options"]["rounds"] = 29
    config.write_text(yaml.safe_dump(cfg))
    code, err = _run(argv, capsys)
    assert code == 2 and "were made with alternation" in err


@pytest.mark.parametrize("problem, message", [
    ("missing folder", "image folder not found"),
    ("unknown method", "unknown method 'nope'"),
    ("unwritable out", "not writable"),
    ("unknown option", "unknown option"),
    ("missing prior", "prior file not found"),
    ("unknown preset", "unknown preset 'nope': choose one of paper, tuned"),
    ("removed option mode", "unknown option(s) ['mode']"),
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
    elif problem == "unknown preset":
        cfg["methods"][0]["options"]["preset"] = "nope"
    elif problem == "removed option mode":  # now a preset
        cfg["methods"][0]["options"]["mode"] = "paper"
    else:
        cfg["methods"][0]["options"]["prior"] = str(tmp_path / "none.pt")
    config.write_text(yaml.safe_dump(cfg))
    code, err = _run(["bench", "--config", str(config), "--no-progress"], capsys)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (out / "rows.csv").exists()


def test_rows_name_the_preset_and_labels_add_it_when_it_is_not_paper(setup, tmp_path):
    from fdem.benchmarks.module import MethodSpec

    assert MethodSpec("fastem-pigdm", {"preset": "demo", "particles": 2}).label == "fastem-pigdm (demo) n=2"
    assert MethodSpec("fastem-pigdm", {"preset": "paper"}).label == MethodSpec("fastem-pigdm").label == "fastem-pigdm"
    out = tmp_path / "out"
    config = _config(setup, out, steps=2, sigmas=[5])
    cfg = yaml.safe_load(config.read_text())
    few = {**cfg["methods"][0]["options"], "preset": "few-step"}
    cfg["methods"].insert(1, {"method": "fastem-pigdm", "options": few})
    config.write_text(yaml.safe_dump(cfg))
    main(["bench", "--config", str(config), "--no-progress"])
    rows = pd.read_csv(out / "rows.csv", keep_default_na=False)
    presets = {m: set(rows.loc[rows["method"] == m, "preset"]) for m in rows["method"].unique()}
    assert presets == {"fastem-pigdm": {"paper"}, "fastem-pigdm (few-step)": {"few-step"}, "alternation": {""}}
    assert len(rows) == 3 * 3 and list(rows.columns).index("preset") == list(rows.columns).index("method_name") + 1
    params = {m: json.loads(p) for m, p in zip(rows["method"], rows["params"]) if m.startswith("fastem")}
    assert params["fastem-pigdm"]["recenter"] == "spline" and params["fastem-pigdm (few-step)"]["step_rule"] == "ddim"


@pytest.mark.parametrize("name", ["demo.yaml", "table1.yaml", "table2.yaml", "ddp_scaling.yaml", "deblur_check.yaml"])
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


@pytest.mark.parametrize("threads", [0, -1, 1.5, "two", True])
def test_bad_thread_count_is_refused(tmp_path, threads):
    from fdem.benchmarks.run import BenchConfig
    from fdem.errors import InputError

    config = _classical_config(tmp_path / "out")
    cfg = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump({**cfg, "threads": threads}))
    with pytest.raises(InputError, match="threads: expected an integer >= 1"):
        BenchConfig.from_yaml(config)


def test_samplers_do_not_start_from_the_observation_noise():
    """The sample seed drew y's noise; a sampler seeded with it would draw the same normals first."""
    from fdem.benchmarks.module import sampler_seeds

    sample_seeds = list(range(40))
    assert set(sampler_seeds(sample_seeds)).isdisjoint(range(10**6))
    for s, t in zip(sample_seeds[:3], sampler_seeds(sample_seeds[:3])):
        noise = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(s))
        first = torch.randn(3, 8, 8, generator=torch.Generator().manual_seed(t))
        assert abs(torch.corrcoef(torch.stack([noise.flatten(), first.flatten()]))[0, 1]) < 0.3
