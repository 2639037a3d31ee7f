"""Kernel fields around the sampler: the camera-shake-with-roll generator, the benchmark's field blur,
the alternation per cell, ``fdem kernels --grid``, ``fdem blur --fields`` and ``fdem deblur --kernel-grid``."""

import numpy as np
import pytest
import torch

from fdem.baselines.alternation import alternation_per_cell
from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule
from fdem.errors import InputError
from fdem.kernel_field import field_blur, field_windows
from fdem.kernels_gen import make_generator
from fdem.kernels_gen.field import CameraShakeField, load_fields
from fdem.memory import estimate_bytes, restorer_plan
from fdem.restorers import build_restorer
from tests.test_cli import run_cli, sharp_png  # noqa: F401  (fixture)
from tests.test_deblur_cli import files  # noqa: F401  (fixture)


def test_fields_are_seeded_centred_and_vary_with_roll_only():
    gen = CameraShakeField(17, "3x3", (128, 128), roll_px=(10.0, 10.0))
    fields = gen.sample(3, seed=4)
    assert fields.shape == (3, 9, 17, 17) and torch.equal(fields, gen.sample(3, seed=4))
    torch.testing.assert_close(fields.sum(dim=(-2, -1)), torch.ones(3, 9))
    shake = make_generator("camera-shake", 17).sample(3, seed=4)
    torch.testing.assert_close(fields[:, 4], shake[:, 0])  # the centre cell: the plain camera shake
    assert (fields[:, 0] - fields[:, 8]).abs().sum(dim=(-2, -1)).min() > 0.2  # opposite corners differ
    still = CameraShakeField(17, "3x3", (128, 128), roll_px=0.0).sample(1, seed=4)
    torch.testing.assert_close(still, shake[:1].expand(-1, 9, -1, -1))  # no roll: one kernel
    with pytest.raises(InputError, match="roll_px"):
        CameraShakeField(17, "3x3", (128, 128), roll_px=(5.0, 1.0))


def test_the_benchmark_blurs_the_scene_through_the_field_laid_on_the_frame():
    dm = BlurBenchmarkDataModule(images="bundled", size=64, blur="scene", kernel_grid="2x2", kernel_size=9, sigmas=[0],
                                 num_images=1)
    dm.setup()
    sample = dm.dataset[0]
    assert sample["kernel"].shape == (4, 9, 9) and sample["y"].shape == (3, 64, 64)
    scene = dm.dataset.sharp(dm.dataset.images[0])  # the frame and 4 px of scene around it
    windows = field_windows(tuple(scene.shape[-2:]), (2, 2), ((4, 4), (64, 64)), like=scene)
    expected = field_blur(scene[None], sample["kernel"][None], windows)[0, :, 4:-4, 4:-4]
    torch.testing.assert_close(sample["y"], expected)
    with pytest.raises(InputError, match="kernel_grid"):
        BlurBenchmarkDataModule(images="bundled", size=64, kernel_grid="2x3")


def test_the_alternation_per_cell_returns_a_field_and_a_blended_image():
    y = torch.rand(1, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    image, field = alternation_per_cell(y, 0.02, (2, 2), kernel_size=5, rounds=2, lam=0.0)
    assert image.shape == y.shape and field.shape == (1, 4, 5, 5)
    assert build_restorer("alternation", "cpu", kernel_size=5, lam=0, rounds=1, kernel_grid="2x2").params()["kernel_grid"] == "2x2"


def test_the_memory_plan_counts_the_cells(files):  # noqa: F811
    common = dict(prior=str(files / "prior.pt"), prior_config=str(files / "prior.yaml"), kernel_size=7,
                  kernel_denoiser=str(files / "denoiser.pt"))
    uniform = restorer_plan(build_restorer("fastem-pigdm", "cpu", preset="field", kernel_grid="1x1", **common), 64, 64)
    field = restorer_plan(build_restorer("fastem-pigdm", "cpu", preset="field", **common), 64, 64)
    assert field.cells == 9 and uniform.cells == 1 and estimate_bytes(field) > estimate_bytes(uniform)


def test_kernels_grid_then_blur_fields_then_deblur_with_a_grid(files, sharp_png, tmp_path, capsys):  # noqa: F811
    bank = tmp_path / "fields.npz"
    code, out, err = run_cli(["kernels", "--size", "5", "--count", "2", "--grid", "2x2", "--frame", "48", "--out", bank,
                              "--preview", tmp_path / "fields.png"], capsys)
    assert code == 0, err
    fields = load_fields(bank)
    assert fields.shape == (2, 2, 2, 5, 5) and (tmp_path / "fields.png").is_file()
    code, _, err = run_cli(["blur", sharp_png, "--fields", bank, "--sigma", "1", "--out", tmp_path / "obs"], capsys)
    assert code == 0, err
    y = np.load(tmp_path / "obs" / "sharp_blurry.npy")
    assert y.shape == (3, 60, 60) and np.load(tmp_path / "obs" / "sharp_field.npy").shape == (2, 2, 5, 5)
    code, _, err = run_cli(["blur", sharp_png, "--out", tmp_path / "none"], capsys)
    assert code == 2 and "exactly one of --kernels" in err
    out = tmp_path / "restored"
    code, printed, err = run_cli(["deblur", tmp_path / "obs" / "sharp_blurry.png", "--kernel-grid", "2x2", "--steps", "2",
                                  "--kernel-size", "5", "--prior", files / "prior.pt", "--prior-config", files / "prior.yaml",
                                  "--kernel-denoiser", files / "denoiser.pt", "--sigma", "1", "--out", out], capsys)
    assert code == 0, err
    assert np.load(out / "sharp_blurry_kernel.npy").shape == (2, 2, 5, 5) and (out / "sharp_blurry_kernel.png").is_file()
    assert "no verdict for a kernel field" in printed
    code, _, err = run_cli(["deblur", tmp_path / "obs" / "sharp_blurry.png", "--kernel-grid", "2x", "--out", out], capsys)
    assert code == 2 and "--kernel-grid" in err


def test_a_field_benchmark_runs_every_row_and_scores_the_fields(files, tmp_path):  # noqa: F811
    import pandas as pd
    import yaml

    from fdem.cli import main

    nets = {"prior": str(files / "prior.pt"), "prior_config": str(files / "prior.yaml"), "kernel_size": 5,
            "kernel_denoiser": str(files / "denoiser.pt"), "steps": 2}
    config = {
        "title": "field", "out": str(tmp_path / "out"), "metrics": ["psnr", "ssim"],
        "data": {"images": "bundled", "num_images": 1, "size": 48, "kernels": "camera-shake", "kernel_size": 5,
                 "kernel_grid": "2x2", "sigmas": [5], "blur": "scene"},
        "methods": [{"method": "blurry", "options": {"kernel_size": 5}},
                    {"method": "pigdm", "label": "true field", "options": {**nets, "preset": "field", "kernel_grid": "2x2"}},
                    {"method": "fastem-pigdm", "label": "field", "options": {**nets, "preset": "field", "kernel_grid": "2x2"}},
                    {"method": "alternation", "label": "per cell", "options": {"kernel_size": 5, "rounds": 1, "lam": 0,
                                                                                "kernel_grid": "2x2"}}],
        "trainer": {"accelerator": "cpu", "devices": 1},
    }
    path = tmp_path / "field.yaml"
    path.write_text(yaml.safe_dump(config))
    main(["bench", "--config", str(path), "--no-progress"])
    rows = pd.read_csv(tmp_path / "out" / "rows.csv").set_index("method")
    assert set(rows.index) == {"blurry", "true field", "field", "per cell"}
    assert rows.loc[["field", "per cell"], "kernel_mse"].gt(0).all() and rows.loc[["field", "per cell"], "reblur"].notna().all()


@pytest.mark.parametrize("varies", [True, False])
def test_deblur_kernel_grid_auto_redoes_an_image_whose_verdict_finds_the_blur_varying(files, sharp_png, tmp_path,
                                                                                    capsys, monkeypatch, varies):  # noqa: F811
    """``--kernel-grid auto``: one kernel first; the field preset's grid only where the verdict's cell gain
    exceeds its threshold (made certain here by moving the threshold)."""
    import fdem.verdict

    monkeypatch.setattr(fdem.verdict, "GAIN_WARN", -1e9 if varies else 1e9)
    out = tmp_path / "auto"
    code, printed, err = run_cli(["deblur", sharp_png, "--kernel-grid", "auto", "--steps", "2", "--kernel-size", "5",
                                  "--prior", files / "prior.pt", "--prior-config", files / "prior.yaml",
                                  "--kernel-denoiser", files / "denoiser.pt", "--sigma", "1", "--out", out], capsys)
    assert code == 0, err
    kernel = np.load(out / "sharp_kernel.npy")
    assert kernel.shape == ((3, 3, 5, 5) if varies else (5, 5))
    assert ("restoring it again with a 3x3 kernel field" in printed) == varies
    assert (out / "sharp_verdict.json").is_file() and (out / "sharp_restored.png").is_file()


def test_deblur_kernel_grid_auto_needs_a_blind_diffusion_method(sharp_png, tmp_path, capsys):  # noqa: F811
    code, _, err = run_cli(["deblur", sharp_png, "--method", "l0-anger", "--kernel-grid", "auto", "--out", tmp_path / "o"],
                           capsys)
    assert code == 2 and "--kernel-grid auto needs a blind diffusion method" in err and not (tmp_path / "o").exists()
