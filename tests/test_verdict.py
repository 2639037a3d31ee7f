"""The verdict without ground truth: its measures on cases whose answer is known, and fdem deblur
writing it (json, picture, console) beside the outputs, with the noise level estimated when not given."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fdem.cli import main
from fdem.kernel_ops import dirac
from fdem.mstep import MStepConfig
from fdem.physics import blur
from fdem.verdict import border_mass, cell_grid, dirac_mass, judge, residual_ratio, verdict_picture
from tests.test_deblur_cli import _assert_refused, files  # noqa: F401  (the CLI fixture)


def line_kernel(size: int = 13, length: int = 7, vertical: bool = False) -> torch.Tensor:
    k = torch.zeros(1, 1, size, size)
    start = size // 2 - length // 2
    if vertical:
        k[0, 0, start:start + length, size // 2] = 1 / length
    else:
        k[0, 0, size // 2, start:start + length] = 1 / length
    return k


def scene(size: int = 160, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, size // 4, size // 4, generator=g)
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="nearest") * 0.8 + 0.1


def test_kernel_shape_measures():
    assert float(dirac_mass(dirac(1, 9))[0]) == pytest.approx(1.0)
    assert float(dirac_mass(line_kernel(9, 9))[0]) == pytest.approx(3 / 9)
    assert float(border_mass(dirac(1, 9))[0]) == pytest.approx(0.0, abs=1e-7)
    assert float(border_mass(line_kernel(9, 9))[0]) == pytest.approx(4 / 9)


def test_the_residual_is_one_sigma_for_the_true_image_and_kernel():
    x, k, sigma = scene(), line_kernel(), 0.02
    y = blur(x, k) + sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    ratio = float(residual_ratio(y, x, k, torch.tensor([sigma]), None)[0])
    assert ratio == pytest.approx(1.0, abs=0.05)
    assert float(residual_ratio(y, x, dirac(1, 13), torch.tensor([sigma]), None)[0]) > 2  # the wrong kernel


def test_uniform_blur_passes_and_blur_that_changes_across_the_frame_is_flagged():
    x, sigma = scene(192, 2), 0.01
    mstep = MStepConfig(kernel_size=13, reg="l2", lam=1e-3, recenter="bilinear")
    noise = sigma * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    uniform = blur(x, line_kernel()) + noise
    verdict, cells = judge(uniform, x, line_kernel(), sigma, "given", mstep)
    assert verdict.trusted, verdict.warnings
    assert verdict.cells == cell_grid(192, 192, 13) == (3, 3) and cells.shape == (9, 1, 13, 13)
    left = torch.arange(192) < 96
    varying = torch.where(left, blur(x, line_kernel()), blur(x, line_kernel(vertical=True))) + noise
    verdict, _ = judge(varying, x, line_kernel(), sigma, "estimated", mstep)
    assert any("varies across the photo" in w for w in verdict.warnings), verdict.warnings
    near_dirac, _ = judge(x + noise, x, dirac(1, 13), sigma, "given", mstep)
    assert any("near a Dirac" in w for w in near_dirac.warnings)


def test_the_picture_shows_input_restored_kernel_and_cells():
    x = scene(96)
    picture = verdict_picture(x, x, line_kernel(), torch.stack([line_kernel()[0]] * 4), (2, 2))
    assert picture.shape == (3, 96, 4 * 96 + 3 * 4)
    assert verdict_picture(x, x, line_kernel(), None, None).shape == (3, 96, 3 * 96 + 2 * 4)


def test_deblur_without_sigma_estimates_it_and_writes_the_verdict(files, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    main(["deblur", str(files / "photo.png"), "--prior", str(files / "prior.pt"), "--prior-config",
          str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--kernel-denoiser",
          str(files / "denoiser.pt"), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "estimated from the image" in printed and "verdict: photo.png: residual" in printed
    record = json.loads((out / "photo_verdict.json").read_text())
    assert record["sigma_source"] == "estimated" and record["sigma255"] > 10  # uniform random pixels: very noisy
    assert set(record) >= {"residual", "dirac_mass", "border_mass", "cells", "cell_gain", "warnings", "trusted"}
    with Image.open(out / "photo_verdict.png") as im:
        assert im.size[1] == 200 and im.size[0] > 3 * 300


@pytest.mark.parametrize("flags, message", [
    (["--sigma", "abc"], "--sigma must be a number in \\[0, 255\\] or auto, got 'abc'"),
    (["--saturation", "bright"], "--saturation must be a level in \\(0, 1\\] or off"),
    (["--saturation", "0"], "saturation must be in \\(0, 1\\]"),
])
def test_bad_noise_and_saturation_flags_are_refused(files, tmp_path, capsys, flags, message):  # noqa: F811
    argv = ["deblur", str(files / "photo.png"), "--prior", str(files / "prior.pt"), "--prior-config",
            str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--out", str(tmp_path / "out"), *flags]
    _assert_refused(argv, capsys, tmp_path / "out", message)


@pytest.mark.parametrize("flags, message", [
    ([], "white.png: too few unclipped pixels"),
    (["--sigma", "5", "--saturation", "0.98"], "white.png: every pixel is saturated"),
])
def test_an_all_saturated_photo_is_refused_and_nothing_is_written(files, tmp_path, capsys, flags, message):  # noqa: F811
    Image.fromarray(np.full((40, 40, 3), 255, np.uint8)).save(tmp_path / "white.png")
    argv = ["deblur", str(tmp_path / "white.png"), "--prior", str(files / "prior.pt"), "--prior-config",
            str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--out", str(tmp_path / "out"), *flags]
    _assert_refused(argv, capsys, tmp_path / "out", message)
