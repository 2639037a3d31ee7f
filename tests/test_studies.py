"""Smoke tests of the one-off studies under ``studies/`` (not installed; their numbers are README's and
docs/'): each study runs once on the smallest input it takes, and the test checks what it wrote."""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fdem.errors import InputError
from fdem.imageio import save_image

REPO = Path(__file__).resolve().parents[1]


def _noise_photos(folder: Path, count: int = 2, shape: tuple[int, int] = (48, 40), seed: int = 0) -> Path:
    """``folder`` holding ``count`` noise photographs ``a.png``, ``b.png``, ... of ``shape`` (H, W)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for name in "abcdefgh"[:count]:
        Image.fromarray(rng.integers(0, 256, (*shape, 3), dtype=np.uint8)).save(folder / f"{name}.png")
    return folder


def _table_rows(text: str, first: str) -> list[list[str]]:
    """The cells of the Markdown table rows of ``text`` whose first cell starts with ``first``."""
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in text.splitlines() if line.startswith("| ")]
    return [cells for cells in rows if cells[0].startswith(first)]


# --- studies/fastem -------------------------------------------------------------------------------

def test_fastem_study_averages_seeds_lists_crops_and_feeds_the_cost_plot(tmp_path, capsys):
    from studies.fastem import cost_plot, fastem_study

    photos = _noise_photos(tmp_path / "photos", seed=1)
    fastem_study.main(["--images", str(photos), "--count", "2", "--size", "32", "--scale", "0.9", "--kernel-size", "7",
                       "--variants", "steps=2; steps=3 start=0.5 step_rule=ddim", "--sampler-seed", "3,4", "--batch", "1",
                       "--trace", str(tmp_path / "t.png"), "--cost-plot", str(tmp_path / "c.png"),
                       "--per-crop", str(tmp_path / "crops.csv")])
    out = capsys.readouterr().out
    assert out.count("\n| ") == 5  # header, blurry input, alternation, two variants
    crops = list(csv.DictReader((tmp_path / "crops.csv").open()))
    assert [(r["sampler_seed"], r["crop"]) for r in crops if r["variant"] == "steps=2"] == [
        ("3", "0"), ("3", "1"), ("4", "0"), ("4", "1")]
    (cells,) = _table_rows(out, "steps=2")
    for seed, mean in zip("34", cells[5].split()):  # each seed's crops average to that seed's column
        values = [float(r["psnr"]) for r in crops if r["variant"] == "steps=2" and r["sampler_seed"] == seed]
        assert sum(values) / 2 == pytest.approx(float(mean), abs=0.006)
    assert all(math.isfinite(float(r["psnr"])) and float(r["kernel_mse"]) > 0 for r in crops if r["sampler_seed"])
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "c.png").stat().st_size > 0
    (tmp_path / "run.md").write_text(out)
    results = cost_plot.read_tables([str(tmp_path / "run.md")])
    assert [r[0] for r in results] == ["steps=2", "steps=3 start=0.5 step_rule=ddim"]
    cost_plot.main([str(tmp_path / "run.md"), "--out", str(tmp_path / "c2.png")])
    assert (tmp_path / "c2.png").read_bytes()[:4] == b"\x89PNG"
    variant = fastem_study.parse_variant("preset=few-step steps=25 restarts=3 kernel_relax=2")
    assert (variant.preset, variant.overrides) == ("few-step", {"steps": 25, "restarts": 3, "kernel_relax": 2})
    assert variant.spec(33).options()["step_rule"] == "ddim"  # the preset's, not overridden
    with pytest.raises(InputError, match="bad variant token 'speed=2'"):
        fastem_study.parse_variant("speed=2")


def test_fastem_study_trace_follows_every_chain():
    from studies.fastem.fastem_study import StepTrace

    x, k = torch.rand(2, 3, 8, 8), torch.full((2, 1, 3, 3), 1 / 9)
    trace = StepTrace(x, k)
    trace(x.repeat(3, 1, 1, 1)[:, None], k.repeat(3, 1, 1, 1))  # 3 chains of 2 images, all exact
    assert trace.psnr[0] > 90 and trace.kmse[0] < 1e-10


def _bench_rows(folder: Path, new_mse: list[float]) -> str:
    """A ``rows.csv`` of two methods on problems a/0 and b/1 (the reference's kernel MSE 1 on both)."""
    rows = pd.DataFrame({"method": ["ref"] * 2 + ["new"] * 2, "method_name": "fastem-pigdm",
                         "params": [json.dumps({"steps": 100})] * 2 + [json.dumps({"steps": 25, "step_rule": "ddim"})] * 2,
                         "image_id": ["a", "b"] * 2, "kernel_id": [0, 1] * 2, "sigma255": 5.0, "seconds": [4.0, 4, 1, 1],
                         "ssim": 0.5, "psnr": [20.0, 20, 21, 21], "kernel_mse": [1.0, 1.0, *new_mse]})
    folder.mkdir()
    rows.to_csv(folder / "rows.csv", index=False)
    return str(folder)


def test_steps_plot_writes_the_study_and_pairs_pooled_runs(tmp_path, capsys):
    from studies.common import run_script
    from studies.fastem.steps_plot import main, step_columns

    relaxed = {"steps": 25, "step_rule": "ddim", "start": 0.5, "kernel_init": "alternation", "kernel_relax": 2.0}
    assert step_columns(json.dumps(relaxed)) == ("ddim from 0.5, alternation start, relax 2", 25)
    assert step_columns(json.dumps({"steps": 10, "em_iters": 2})) == ("ddpm", 20) and step_columns("{}") == ("–", 0)

    grid, check = _bench_rows(tmp_path / "grid", [1.0, 1.0]), _bench_rows(tmp_path / "check", [1.0, 3.0])
    main([grid, "--pool", check, "--pair", "ref", "new"])
    out = capsys.readouterr().out
    assert "new against ref, 4 problems:" in out and "kernel MSE ratio 1.500" in out and "PSNR +1.00 dB" in out
    assert f"problem b/1 of {check} (1 → 3); ratio without it 1.000" in out
    table = (tmp_path / "grid" / "steps.md").read_text()  # 25 DDIM calls against the 100 ancestral ones: 4× faster
    assert "| fastem-pigdm | ddim | 25 | 1 | 21.00 | 0.500 | 1 | 2 | +1.00 | 1.00 | 4.00 |" in table
    assert len(pd.read_csv(tmp_path / "grid" / "steps.csv")) == 2
    assert (tmp_path / "grid" / "steps.png").stat().st_size > 0 and (tmp_path / "grid" / "pair.png").stat().st_size > 0
    for argv, message in (([grid, "--pool", check], "--pool needs --pair"),
                          ([grid, "--pair", "ref", "missing"], "no problem solved by both 'ref' and 'missing'"),
                          ([grid, "--pool", grid, "--pair", "ref", "new"], "a run is named twice")):
        with pytest.raises(SystemExit) as exit_info:  # as `python -m studies.fastem.steps_plot` runs it
            run_script(lambda: main(argv))
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_step_profile_shares_are_fractions():
    from studies.fastem.step_profile import step_shares

    shares = step_shares(kernel_size=9, images=1, steps=2)
    assert 0 < shares["mstep"] < 1 and 0 < shares["fft"] < 1


# --- studies/borders ------------------------------------------------------------------------------

def test_border_check_blurs_the_window_as_part_of_the_photo_and_draws_the_borders(tmp_path, capsys):
    from studies.borders import border_check
    from studies.common import run_script

    photo = torch.rand(3, 80, 96, generator=torch.Generator().manual_seed(1))
    x, y, k = border_check.window_problem(photo, 40, 48, seed=2)
    assert x.shape == y.shape == (1, 3, 40, 48) and k.shape == (1, 1, 33, 33)
    assert torch.equal(x[0], photo[:, 20:60, 24:72])
    mask = border_check.frame_mask(40, 48)
    assert mask.sum() == 40 * 48 - 8 * 16
    assert border_check.masked_psnr((x + 0.1).clamp(0, 2), x, mask) == pytest.approx(20.0, abs=1e-3)
    save_image(tmp_path / "photo.png", torch.rand(3, 96, 96, generator=torch.Generator().manual_seed(3)))
    border_check.main(["--image", str(tmp_path / "photo.png"), "--height", "64", "--width", "64", "--borders", "circular",
                       "--steps", "2", "--out", str(tmp_path / "borders.png")])
    (row,) = _table_rows(capsys.readouterr().out, "circular")
    assert all(math.isfinite(float(v)) for v in row[1:])
    assert (tmp_path / "borders.png").read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: border_check.main(["--image", "nowhere.png", "--borders", "smooth,wrap"]))
    message = "error: --borders must list some of circular, reflect, smooth, impute, got 'smooth,wrap'"
    assert exit_info.value.code == 2 and capsys.readouterr().err.strip().splitlines() == [message]


def test_tiled_check_compares_the_whole_photo_with_its_crop(monkeypatch):
    from studies.borders import tiled_check

    (name, photo), = tiled_check.held_out_photos(1)
    assert name == "coffee" and photo.shape == (3, 384, 512)
    for constant, small in (("SIZE", (96, 128)), ("CROP", 64), ("KERNEL", 9)):  # still more than one 64² tile
        monkeypatch.setattr(tiled_check, constant, small)
    (row,) = tiled_check.compare(count=1, steps=2, step_rule="ddim")
    assert row.name == "coffee" and row.tiled_kmse > 0 and row.crop_kmse > 0
    assert math.isfinite(row.tiled_psnr) and math.isfinite(row.crop_psnr)
    assert "| coffee |" in tiled_check.markdown([row])


# --- studies/deblur_check, studies/l0 -------------------------------------------------------------

def test_deblur_check_drives_the_command_line_and_scores_every_image(tmp_path, monkeypatch):
    from fdem.cli import main
    from studies.deblur_check import deblur_check

    monkeypatch.setattr(deblur_check, "fdem", main)  # the same commands in this process: no interpreter start-ups
    photos = _noise_photos(tmp_path / "photos")
    rows = deblur_check.run(str(photos), 2, 32, 0.9, 7, 5.0, tmp_path / "work", ["--kernel-size", "7", "--steps", "2"], "scene")
    assert [r["name"] for r in rows] == ["a", "b"]
    assert np.load(tmp_path / "work" / "blurry" / "a_blurry.npy").shape == (3, 32, 32)  # the frame the camera kept
    assert np.asarray(Image.open(tmp_path / "work" / "scene" / "a.png")).shape[:2] == (38, 38)  # a kernel radius more
    assert all(math.isfinite(r[k]) for r in rows for k in ("blurry", "restored", "kmse", "dirac"))


def test_penalty_plot_pairs_rows_by_sample_and_scales_the_kernel_error(tmp_path, capsys):
    from fdem.kernels_gen import make_generator
    from studies.deblur_check import penalty_plot

    data = {"kernels": "gaussian", "kernel_size": 9, "kernel_seed": 3}
    bank = np.asarray(make_generator("gaussian", 9).sample(2, seed=3))
    rows = pd.DataFrame({
        "method": ["in", "in", "blind", "blind", "oracle", "oracle", "blind"],
        "index": [0, 1, 0, 1, 0, 1, 7], "kernel_id": [0, 1, 0, 1, 0, 1, 1],
        "psnr": [20.0, 22.0, 21.5, 21.0, 25.0, 26.0, 30.0],
        "kernel_mse": [np.nan, np.nan, 1e-4, 2e-4, np.nan, np.nan, 1e-4]})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    (tmp_path / "bench_data.json").write_text(json.dumps({"data": data}))
    points = penalty_plot.paired_gains(rows, data, "blind", "in", "oracle")
    assert list(points.index) == [0, 1]  # sample 7 has no input row
    assert points["gain"].tolist() == [1.5, -1.0] and points["oracle_gain"].tolist() == [5.0, 4.0]
    assert points.loc[1, "kernel_error"] == pytest.approx(2e-4 * 81 / (bank[1] ** 2).sum())
    penalty_plot.main(["--run", str(tmp_path), "--row", "blind", "--input", "in", "--oracle", "oracle",
                       "--out", str(tmp_path / "p.png")])
    assert "2 crops; below the input: 1" in capsys.readouterr().out and (tmp_path / "p.png").stat().st_size > 0


def test_kernel_shapes_runs_the_bench_samples_and_measures_each_kernel(tmp_path, capsys):
    import yaml

    from studies.deblur_check import kernel_shapes

    photos = _noise_photos(tmp_path / "photos")
    data = {"images": str(photos), "size": 32, "scale": 0.9, "kernels": "camera-shake", "kernel_size": 7, "sigmas": [5]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"title": "t", "out": str(tmp_path / "o"), "data": data, "methods": []}))
    kernel_shapes.main(["--config", str(tmp_path / "c.yaml"), "--indices", "1", "--set", "preset=photo", "steps=2",
                        "kernel_size=7", "--out", str(tmp_path / "k.png")])
    (cells,) = _table_rows(capsys.readouterr().out, "1")
    assert float(cells[1]) > 0 and (tmp_path / "k.png").stat().st_size > 0
    line = torch.zeros(7, 7)
    line[3, 1:6] = 1
    assert kernel_shapes.support(line) == 5 and kernel_shapes.rms_radius(line) == pytest.approx(2**0.5)


def test_l0_check_scores_one_photo_of_a_split(tmp_path, capsys):
    from studies.l0 import l0_check

    save_image(tmp_path / "val" / "a.png", torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(4)))
    rows = l0_check.main(["--split", "val", "--images", "1", "--root", str(tmp_path)])
    assert [name for name, _ in rows] == ["a", "mean"]
    assert all(math.isfinite(v) for v in rows[0][1].values()) and rows[0][1]["kernel MSE"] > 0
    assert "| mean |" in capsys.readouterr().out


# --- studies/priors -------------------------------------------------------------------------------

def test_prior_check_prints_both_methods(capsys):
    from studies.priors.prior_check import main

    main(["--prior", "small64", "--steps", "2", "--per-image", "1", "--kernel-size", "5"])
    out = capsys.readouterr().out
    for name in ("fastem-pigdm", "Wiener + M-step alternation"):
        (row,) = _table_rows(out, name)
        assert math.isfinite(float(row[1])) and float(row[2]) > 0


def test_prior_eval_prints_every_row(tmp_path, capsys):
    from studies.common import crops
    from studies.priors.prior_eval import main

    for j in range(2):
        save_image(tmp_path / f"{j}.png", torch.rand(3, 80, 96, generator=torch.Generator().manual_seed(j)))
    assert crops(str(tmp_path), 2, 32, 0.5).shape == (2, 3, 32, 32)
    main(["--images", str(tmp_path), "--priors", "small64", "--count", "2", "--size", "32", "--kernel-size", "5",
          "--steps", "2"])
    out = capsys.readouterr().out
    for name in ("blurry input", "Wiener + M-step alternation", "pigdm (true kernel)", "fastem-pigdm"):
        (row,) = _table_rows(out, name)
        assert math.isfinite(float(row[2]))


def test_training_curve_plots_a_fit_log_and_refuses_other_files(tmp_path):
    from studies.priors.training_curve import plot_curve

    log = tmp_path / "metrics.csv"
    log.write_text("epoch,step,train/loss,val/loss\n0,9,0.5,\n0,19,0.4,\n0,19,,0.45\n0,29,0.3,\n")
    assert plot_curve(log, tmp_path / "curve.png", window=2).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "other.csv").write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match="not a `fdem fit` CSV log"):
        plot_curve(tmp_path / "other.csv", tmp_path / "x.png")
    with pytest.raises(InputError, match="not found"):
        plot_curve(tmp_path / "missing.csv", tmp_path / "x.png")


# --- studies/equality -----------------------------------------------------------------------------

def test_equality_floor_rows():
    """An identical variant is exactly equal, a perturbed observation is not (the tool's point), and
    the thread count is restored."""
    from studies.equality import equality_floor as floor

    threads = torch.get_num_threads()
    rows = floor.floor_rows("fastem-pigdm", [2], per_image=1,
                            variants=(floor.Variant("same"), floor.Variant("y + 1e-3", perturb=1e-3)))
    same, moved = rows
    assert (same["variant"], same["max_abs_diff"], same["equal"]) == ("same", 0, True)
    assert moved["max_abs_diff"] > 0 and moved["psnr_diff_max_db"] > 0
    assert torch.get_num_threads() == threads
    assert "| 2 | y + 1e-3 |" in floor.markdown(rows)


# --- from the command line ------------------------------------------------------------------------

def test_a_study_runs_from_the_repo_root_and_reports_bad_input_in_one_line_with_status_2():
    run = subprocess.run([sys.executable, "-m", "studies.fastem.fastem_study", "--images", "nowhere", "--sampler-seed", "3,3"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    message = "error: --sampler-seed must be distinct non-negative integers separated by commas, got '3,3'"
    assert run.returncode == 2 and run.stderr.strip().splitlines() == [message]


@pytest.mark.slow
def test_tiled_fast_em_on_512x384_recovers_the_kernel_at_least_as_well_as_its_256_crop():
    """Issue 16's shipped-prior check (about 9 min on one CPU thread; README has its numbers)."""
    from studies.borders import tiled_check

    (row,) = tiled_check.compare(count=1, steps=50)
    assert row.tiled_kmse <= row.crop_kmse


# --- studies/noise_level, studies/real_photos -----------------------------------------------------
