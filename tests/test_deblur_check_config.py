"""configs/bench/deblur_check.yaml, shrunk to two 32² photos and its two cheap methods, runs through
``fdem bench`` on scaled, scene-blurred data; a bad data value stops it with one line."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from fdem.cli import main
from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule
from fdem.metrics import psnr

CONFIG = Path(__file__).parents[1] / "configs" / "bench" / "deblur_check.yaml"


def shrunk_config(tmp_path: Path, **data) -> tuple[Path, dict]:
    """The shipped config on two random 32² photos, 16² frames, 7² kernels, blurry and alternation, one process."""
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(images / name)
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["data"].update(images=str(images), num_images=2, size=16, scale=0.75, kernel_size=7, **data)
    cfg["methods"] = [{**m, "options": {**m["options"], "kernel_size": 7}} for m in cfg["methods"]
                      if m["method"] in ("blurry", "alternation")]
    cfg.update(out=str(tmp_path / "out"), trainer={"accelerator": "cpu", "devices": 1},
               compare={"input": cfg["compare"]["input"]})  # the oracle row is one of those left out
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, cfg


def test_shrunk_config_runs_on_scene_blurred_crops(tmp_path):
    path, cfg = shrunk_config(tmp_path)
    assert cfg["data"]["blur"] == "scene" and len(cfg["methods"]) == 2
    main(["bench", "--config", str(path), "--no-progress"])
    rows = pd.read_csv(tmp_path / "out" / "rows.csv")
    assert len(rows) == 4 and set(rows["method"]) == {"blurry input (Dirac kernel)", "alternation"}
    scene = BlurBenchmarkDataModule(**cfg["data"])
    circular = BlurBenchmarkDataModule(**{**cfg["data"], "blur": "circular"})
    for data in (scene, circular):
        data.setup()
    blurry = rows[rows["method_name"] == "blurry"].sort_values("index")
    expected = [float(psnr(s["y"][None].clamp(0, 1), s["sharp"][None])) for s in scene.dataset]
    wrapped = [float(psnr(s["y"][None].clamp(0, 1), s["sharp"][None])) for s in circular.dataset]
    assert np.allclose(blurry["psnr"], expected, atol=1e-4) and not np.allclose(blurry["psnr"], wrapped, atol=0.05)
    compared = pd.read_csv(tmp_path / "out" / "compare.csv").set_index("method")
    gain = rows[rows["method"] == "alternation"].sort_values("index")["psnr"].to_numpy() - blurry["psnr"].to_numpy()
    assert compared.loc["alternation", "gain_db"] == pytest.approx(gain.mean(), abs=1e-6)


@pytest.mark.parametrize("name", ["deblur_check", "deblur_check_noise", "deblur_check_faces", "deblur_check_val",
                                  "deblur_check_steps"])
def test_every_deblur_check_config_parses_and_compares_with_the_input(name):
    from fdem.benchmarks.run import BenchConfig

    cfg = BenchConfig.from_yaml(CONFIG.with_name(f"{name}.yaml"))
    assert cfg.compare["input"] in {m["label"] for m in cfg.methods if "label" in m}
    assert cfg.data["blur"] == "scene" and cfg.data["size"] == 128


def test_bad_blur_value_stops_the_run_with_one_line(tmp_path, capsys):
    path, _ = shrunk_config(tmp_path, blur="Scene")
    with pytest.raises(SystemExit) as stop:
        main(["bench", "--config", str(path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err == "fdem: error: blur must be one of circular, scene, got 'Scene'"
