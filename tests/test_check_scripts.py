"""The issue-14/16 check scripts run end to end on tiny inputs (their numbers are README's)."""

import csv
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fdem.benchmarks import border_check, cost_plot, deblur_check, fastem_study, tiled_check
from fdem.errors import InputError


def _noise_photos(tmp_path, seed: int):
    """A folder of two 48×40 noise photographs, ``a.png`` and ``b.png``."""
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(seed)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (48, 40, 3), dtype=np.uint8)).save(photos / f"{name}.png")
    return photos


@pytest.mark.parametrize("blur", deblur_check.BLURS)
def test_deblur_check_drives_the_command_line_and_scores_every_image(tmp_path, blur):
    photos = _noise_photos(tmp_path, 0)
    rows = deblur_check.run(str(photos), 2, 32, 0.9, 7, 5.0, tmp_path / "work", ["--kernel-size", "7", "--steps", "2"], blur)
    assert [r["name"] for r in rows] == ["a", "b"]
    assert np.load(tmp_path / "work" / "blurry" / "a_blurry.npy").shape == (3, 32, 32)
    scene = np.asarray(Image.open(tmp_path / "work" / "scene" / "a.png"))
    assert scene.shape[:2] == ((38, 38) if blur == "scene" else (32, 32))  # a kernel radius more per side
    assert all(math.isfinite(r[k]) for r in rows for k in ("blurry", "restored", "kmse", "dirac"))
    assert (tmp_path / "work" / "restored" / "a_blurry_kernel.npy").is_file()


def test_fastem_study_runs_variants_and_writes_trace_and_cost_plots(tmp_path, capsys):
    photos = _noise_photos(tmp_path, 1)
    fastem_study.main(["--images", str(photos), "--count", "2", "--size", "32", "--scale", "0.9", "--kernel-size", "7",
                       "--variants", "steps=2; steps=3; steps=3 start=0.5 step_rule=ddim", "--trace", str(tmp_path / "t.png"),
                       "--cost-plot", str(tmp_path / "c.png")])
    out = capsys.readouterr().out
    assert "| steps=3 start=0.5 step_rule=ddim |" in out and out.count("\n| ") == 6  # header, blurry, alternation, 3 variants
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0
    (tmp_path / "run.md").write_text(out)
    results = cost_plot.read_tables([str(tmp_path / "run.md")])
    assert [r[0] for r in results] == ["steps=2", "steps=3", "steps=3 start=0.5 step_rule=ddim"]
    assert cost_plot.rule_of(results[2][0]) == "start=0.5 step_rule=ddim" and cost_plot.steps_of("default") == 100
    cost_plot.main([str(tmp_path / "run.md"), "--out", str(tmp_path / "c2.png")])
    assert (tmp_path / "c2.png").stat().st_size > 0
    with pytest.raises(InputError, match="bad variant token 'speed=2'"):
        fastem_study.parse_variant("speed=2")


def test_fastem_study_averages_sampler_seeds_and_lists_each(tmp_path, capsys):
    photos = _noise_photos(tmp_path, 2)
    common = ["--images", str(photos), "--count", "2", "--size", "32", "--scale", "0.9", "--kernel-size", "7",
              "--variants", "steps=2"]
    means = []
    for seed in ("3", "4"):
        fastem_study.main(common + ["--sampler-seed", seed])
        (line,) = [row for row in capsys.readouterr().out.splitlines() if row.startswith("| steps=2 |")]
        means.append(float(line.split("|")[2]))
    fastem_study.main(common + ["--sampler-seed", "3,4", "--batch", "1", "--trace", str(tmp_path / "t.png"),
                                "--per-crop", str(tmp_path / "crops.csv")])
    (line,) = [row for row in capsys.readouterr().out.splitlines() if row.startswith("| steps=2 |")]
    crops = list(csv.DictReader((tmp_path / "crops.csv").open()))
    assert [(r["variant"], r["sampler_seed"], r["crop"]) for r in crops if r["variant"] == "steps=2"] == [
        ("steps=2", "3", "0"), ("steps=2", "3", "1"), ("steps=2", "4", "0"), ("steps=2", "4", "1")]
    for seed, mean in zip("34", means):  # each seed's crops average to that seed's one-seed run
        values = [float(r["psnr"]) for r in crops if r["variant"] == "steps=2" and r["sampler_seed"] == seed]
        assert sum(values) / 2 == pytest.approx(mean, abs=0.006)
    assert all(float(r["kernel_mse"]) > 0 for r in crops) and {r["sampler_seed"] for r in crops[:4]} == {""}
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    assert [float(v) for v in cells[5].split()] == pytest.approx(means, abs=0.006)
    assert float(cells[1]) == pytest.approx(sum(means) / 2, abs=0.01)
    assert (tmp_path / "t.png").stat().st_size > 0
    for bad in ("3,3", "-1", "a", ""):
        with pytest.raises(InputError, match="--sampler-seed"):
            fastem_study.parse_seeds(bad)


@pytest.mark.parametrize("script, flags, message", [
    ("fastem_study", ["--images", "nowhere", "--sampler-seed", "3,3"],
     "--sampler-seed must be distinct non-negative integers separated by commas, got '3,3'"),
    ("fastem_study", ["--images", "nowhere", "--per-crop", "no/such/folder/c.csv"],
     "--per-crop no/such/folder/c.csv: its folder does not exist"),
    ("border_check", ["--image", "nowhere.png", "--borders", "smooth,wrap"],
     "--borders must list some of circular, reflect, smooth, impute, got 'smooth,wrap'"),
])
def test_check_scripts_report_bad_input_in_one_line_with_status_2(script, flags, message):
    import subprocess
    import sys

    run = subprocess.run([sys.executable, "-m", f"fdem.benchmarks.{script}", *flags],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [f"error: {message}"]


def test_border_check_window_is_blurred_as_part_of_the_whole_photo():
    photo = torch.rand(3, 80, 96, generator=torch.Generator().manual_seed(1))
    x, y, k = border_check.window_problem(photo, 40, 48, seed=2)
    assert x.shape == y.shape == (1, 3, 40, 48) and k.shape == (1, 1, 33, 33)
    assert torch.equal(x[0], photo[:, 20:60, 24:72])
    mask = border_check.frame_mask(40, 48)
    assert mask.sum() == 40 * 48 - 8 * 16
    assert border_check.masked_psnr((x + 0.1).clamp(0, 2), x, mask) == pytest.approx(20.0, abs=1e-3)


def test_tiled_check_photos_have_the_issue_size():
    (name, photo), = tiled_check.held_out_photos(1)
    assert name == "coffee" and photo.shape == (3, 384, 512)


@pytest.mark.slow
def test_tiled_fast_em_on_512x384_recovers_the_kernel_at_least_as_well_as_its_256_crop():
    """Issue 16's shipped-prior check (about 9 min on one CPU thread; README has its numbers)."""
    (row,) = tiled_check.compare(count=1, steps=50)
    assert row.tiled_kmse <= row.crop_kmse
