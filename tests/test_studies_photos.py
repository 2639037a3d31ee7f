"""The real-photo, saturation, kernel-field and start studies (studies/noise_level, real_photos, saturation,
borders, kernel_field, verdict_cells, fastem/oracle_start) run end to end on tiny inputs."""

from __future__ import annotations

import json
import math

import torch

from tests.test_studies import _noise_photos, _table_rows


def test_estimate_table_reads_every_sigma_and_format(tmp_path, capsys):
    from studies.noise_level import estimate_table

    photos = _noise_photos(tmp_path / "photos", count=2, shape=(200, 200))
    estimate_table.main(["--images", str(photos), "--count", "2", "--size", "80", "--kernel-size", "9"])
    rows = _table_rows(capsys.readouterr().out, "PNG")
    assert [float(r[1]) for r in rows] == [1, 2, 5, 10, 20] and all(float(r[2]) > 0 for r in rows)
    y = torch.full((3, 16, 16), 0.5) + 0.05 * torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert (estimate_table.encoded(y, 30) - 0.5).std() < (estimate_table.encoded(y, None) - 0.5).std()  # JPEG smooths


def test_run_photos_tabulates_verdicts_and_resumes(tmp_path, capsys, monkeypatch):
    from studies.real_photos import run_photos

    photos = _noise_photos(tmp_path / "photos", count=2)
    calls = []

    def fake_deblur(photo, out, max_side, extra):
        calls.append(photo.stem)
        out.mkdir(parents=True)
        verdict = {"sigma255": 3.0, "residual": 1.1, "dirac_mass": 0.6, "border_mass": 0.01, "cell_gain": [0.2, None],
                   "warnings": ["the kernel is near a Dirac (60%): ..."]}
        (out / f"{photo.stem}_verdict.json").write_text(json.dumps(verdict))
        return 12.0

    monkeypatch.setattr(run_photos, "deblur", fake_deblur)
    run_photos.main(["--images", str(photos), "--out", str(tmp_path / "out")])
    run_photos.main(["--images", str(photos), "--out", str(tmp_path / "out")])  # resumes: nothing to run
    assert calls == ["a", "b"]
    row = _table_rows((tmp_path / "out" / "table.md").read_text(), "a")[0]
    assert row[1:] == ["3.00", "1.10", "60 %", "1.0 %", "0.20", "the kernel is near a Dirac (60%)", "12"]


def test_floor_check_prints_a_row_per_crop(tmp_path, capsys):
    from studies.noise_level import floor_check

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(240, 240))
    floor_check.main(["--images", str(photos), "--count", "1", "--size", "80", "--told", "1", "5", "--steps", "2"])
    row = _table_rows(capsys.readouterr().out, "a")[0]
    assert len(row) == 4 and all(float(c) > 0 for c in row[1:])


def test_saturation_mstep_check_compares_five_data_terms(tmp_path, capsys):
    from studies.saturation import mstep_check

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(200, 200))
    mstep_check.main(["--images", str(photos), "--count", "1", "--size", "64", "--kernel-size", "9", "--rounds", "2"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["every pixel data", "mask (kernel box)", "clipped pixels only",
                                        "mask (kernel box), left out", "clipped pixels only, left out"]
    assert rows[1][3] == "1.00×"


def test_tile_timing_prints_whole_and_tiled_seconds(capsys):
    from studies.borders import tile_timing

    tile_timing.main(["--sizes", "1x64x96", "--tile", "64"])
    row = _table_rows(capsys.readouterr().out, "64x96")[0]
    assert row[1] == "1" and row[2] in ("True", "False") and all(float(c) > 0 for c in row[3:])


def test_field_variants_prints_a_row_per_variant(tmp_path, capsys):
    from studies.kernel_field import field_variants

    assert field_variants.parse_variants("kernel_grid=1x1 field_shrink=0.5; ") == [{"kernel_grid": "1x1", "field_shrink": 0.5}, {}]
    photos = _noise_photos(tmp_path / "photos", count=1, shape=(120, 120))
    field_variants.main(["--images", str(photos), "--count", "1", "--size", "64", "--kernel-size", "9", "--grid", "2x2",
                         "--variants", "kernel_grid=1x1 steps=2; kernel_grid=2x2 steps=2"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["kernel_grid=1x1 steps=2", "kernel_grid=2x2 steps=2"]
    assert all(float(r[1]) > 0 and float(r[2]) > 0 for r in rows[1:])


def test_uniform_ceiling_gives_pigdm_the_true_cells_stand_ins(tmp_path, capsys):
    import yaml

    from studies.kernel_field import uniform_ceiling

    field = torch.rand(4, 5, 5)
    ins = uniform_ceiling.stand_ins(field)
    assert torch.allclose(ins["mean of the cells"][0, 0], field.mean(dim=0)) and torch.equal(ins["centre cell"][0, 0], field[2])
    photos = _noise_photos(tmp_path / "photos", count=1, shape=(120, 120))
    data = {"images": str(photos), "size": 64, "kernels": "camera-shake", "kernel_size": 9, "kernel_grid": "2x2", "sigmas": [5]}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"title": "t", "out": str(tmp_path / "o"), "data": data, "methods": []}))
    uniform_ceiling.main(["--config", str(tmp_path / "c.yaml"), "--count", "1",
                          "--set", "preset=field", "kernel_grid=1x1", "steps=2", "kernel_size=9"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows] == ["image", "0", "mean"] and all(math.isfinite(float(v)) for v in rows[1][1:])


def test_field_picture_draws_three_grids(tmp_path, capsys):
    from PIL import Image

    from studies.kernel_field import field_picture

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(120, 120))
    field_picture.main(["--images", str(photos), "--size", "64", "--kernel-size", "9", "--grid", "2x2",
                        "--out", str(tmp_path / "field.png")])
    printed = capsys.readouterr().out
    assert "space-varying Fast EM: PSNR" in printed and "uniform Fast EM: PSNR" in printed
    with Image.open(tmp_path / "field.png") as im:
        assert im.size[0] > 2 * im.size[1]  # 6 kernels wide, 2 high


def test_blind_cells_prints_four_blurs(tmp_path, capsys):
    from studies.verdict_cells import blind_cells

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(260, 260))
    blind_cells.main(["--images", str(photos), "--count", "1", "--side", "256"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["one kernel", "roll 6-16 px", "roll 16-24 px", "4 independent kernels"]
    assert rows[1][5].startswith("0.00")  # one kernel everywhere: the true cells do not differ
    assert float(rows[4][5].split()[0]) > 0  # independent kernels do
    blind_cells.main(["--photos", str(photos), "--side", "256"])
    row = _table_rows(capsys.readouterr().out, "a.png")[0]
    assert row[1] == "2x2" and float(row[2]) >= 0


def test_the_kernel_free_cell_studies_print_four_blurs_and_score_photos(tmp_path, capsys):
    """Gradient autocorrelation: the true kernels' spread is 0 under one kernel and positive for four;
    residual blur with the true centre kernel: one number per blur; both score blurred photos per row."""
    from studies.verdict_cells import autocorrelation, residual_blur

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(260, 260))
    autocorrelation.main(["--images", str(photos), "--count", "1", "--side", "256"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["one kernel", "roll 6-16 px", "roll 16-24 px", "4 independent kernels"]
    assert float(rows[1][2].split()[0]) < 1e-6 < float(rows[4][2].split()[0])
    residual_blur.main(["--images", str(photos), "--count", "1", "--side", "256", "--oracle"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert len(rows) == 5 and all(float(r[1].split()[0]) >= 0 for r in rows[1:])
    autocorrelation.main(["--photos", str(photos), "--side", "256"])
    assert _table_rows(capsys.readouterr().out, "a.png")[0][1] == "2x2"


def test_lamp_model_compares_four_data_terms(tmp_path, capsys):
    from studies.saturation import lamp_model

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(200, 200))
    lamp_model.main(["--images", str(photos), "--count", "1", "--size", "64", "--kernel-size", "9", "--rounds", "2"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["every pixel data", "mask (kernel box)", "lamps from the streaks, clipped pixels masked",
                                        "true scene with its lamps, clipped pixels masked"]
    assert rows[1][3] == "1.00×" and all(float(r[1]) > 0 for r in rows[1:])


def test_oracle_start_prints_both_starts_per_crop(tmp_path, capsys):
    from studies.fastem import oracle_start

    photos = _noise_photos(tmp_path / "photos", count=1, shape=(300, 300))
    oracle_start.main(["--images", str(photos), "--count", "1", "--kernel-size", "9", "--steps", "2", "--mstep",
                       "--rounds", "2"])
    rows = _table_rows(capsys.readouterr().out, "")
    assert [r[0] for r in rows[1:]] == ["0", "mean"]
    values = [float(c) for c in rows[1][1:]]
    assert len(values) == 7 and all(math.isfinite(v) and v > 0 for v in values) and values[2] != values[4]
