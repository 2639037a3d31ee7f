"""``fdem speed``, :mod:`fdem.benchmarks.speed` and the ``fdem bench`` speed grid on a tiny UNet (a few seconds)."""

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from fdem.benchmarks.flops import method_flops, network_flops, peak_tflops
from fdem.benchmarks.speed import build_prior, equality, markdown_table, measure, run_speed
from fdem.cli import main
from fdem.errors import InputError
from fdem.nets.unet import NAMED_CONFIGS
from fdem.sampling.network_speed import SpeedOptions, accelerate

TINY = dict(image_size=32, model_channels=32, channel_mult=[1, 2], attention_resolutions=[8], num_head_channels=32)


def test_run_speed_rows():
    rows = run_speed(
        ["fastem-pigdm", "pigdm"], TINY, 32, [1, 2], steps=3, repeats=1, warmup=0, progress=False
    )
    assert [(r["method"], r["batch"]) for r in rows] == [("fastem-pigdm", 1), ("fastem-pigdm", 2), ("pigdm", 1), ("pigdm", 2)]
    for r in rows:
        assert r["sec_per_call"] > 0 and r["images_per_sec"] > 0
        assert r["sec_per_image"] == pytest.approx(r["sec_per_call"] / r["batch"])
        assert (r["steps"], r["default_steps"], r["net_calls"]) == (3, 100, 3)
        assert (r["particles"], r["image_size"], r["kernel_size"], r["unet"]) == (1, 32, 17, "custom")
        assert r["params"] > 0 and r["threads"] == 1 and r["device"] == "cpu"
        assert r["device_name"] and r["torch"]
    table = markdown_table(rows)
    assert table.count("\n| ") == 1 + len(rows) and "3 (default 100)" in table


def test_cli_writes_csv(tmp_path, capsys):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "speed.csv"
    main(["speed", "--unet", str(config), "--size", "32", "--methods", "pigdm", "--batch", "1",
          "--steps", "2", "--repeats", "1", "--warmup", "0", "--threads", "1", "--out", str(out)])  # returns: exit 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 1 and rows[0]["unet"] == "tiny" and rows[0]["steps"] == "2"
    printed = capsys.readouterr().out
    assert "| pigdm | 2 (default 100) | 1 | 1 |" in printed and str(out) in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "pigdm,fastem-foo"], "unknown method"),
        (["--unet", "huge"], "unknown UNet config"),
        (["--batch", "1,0"], "batch"),
        (["--batch", "1,x"], "--batch"),
        (["--size", "60"], "multiple of 8"),
        (["--steps", "1"], "steps"),
        (["--threads", "0"], "threads"),
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["speed", "--out", str(tmp_path / "s.csv"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fdem: error:") and message in err[0]
    assert not (tmp_path / "s.csv").exists()


# --- issue 7: switches, FLOPs, peaks, equality columns and the `fdem bench` speed grid -------------

KERNEL_TINY = dict(image_size=16, in_channels=1, model_channels=32, channel_mult=[1, 2], attention_resolutions=[],
                   num_head_channels=32)


def test_rows_record_switches_flops_and_blind_dps():
    rows = run_speed(["blind-dps", "diffem-pigdm"], TINY, 32, [1], steps=2, em_iters=2, repeats=1, warmup=0,
                     progress=False, kernel_unet=KERNEL_TINY, speed=SpeedOptions("fp32", True, False))
    blind, diffem = rows
    assert (blind["kernel_size"], blind["net_calls"], blind["default_steps"]) == (32, 2, 1000)
    assert (diffem["net_calls"], diffem["em_iters"], diffem["default_steps"]) == (4, 2, 100)
    assert diffem["sec_per_image_default_steps"] == pytest.approx(diffem["sec_per_image"] * 1000 / 4)
    for r in rows:
        assert (r["precision"], r["channels_last"], r["compiled"]) == ("fp32", True, False)
        assert r["gflop_per_image"] > 0 and r["achieved_tflops"] > 0 and math.isnan(r["peak_tflops"])
        assert math.isnan(r["psnr_diff_db"]) and r["equal"] is None  # no reference given


def test_flop_count_is_the_papers_776_gflop_per_guided_step():
    cfg = NAMED_CONFIGS["ffhq256"]
    forward, guided = network_flops(cfg, 256)
    assert guided / 1e9 == pytest.approx(776, rel=2e-3) and forward == pytest.approx(guided / 2, rel=0.01)
    assert method_flops("pigdm", cfg, 256) == 99 * guided + forward  # ΠGDM's last step has no guidance
    assert method_flops("diffem-pigdm", cfg, 256, steps=10, em_iters=3) == 3 * (9 * guided + forward)
    assert method_flops("dps", cfg, 256, steps=10) == 10 * guided


def test_device_peaks():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "tf32") == 378.0
    assert peak_tflops("NVIDIA H200", "fp32") == 66.9 and peak_tflops("NVIDIA H200 NVL", "bf16") == 835.5
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "bf16") == 312.0
    assert math.isnan(peak_tflops("Intel(R) Xeon(R) Processor", "fp32"))


def test_equality_columns_compare_with_the_reference_run():
    net = build_prior(TINY, torch.device("cpu")).net
    options = dict(steps=3, repeats=1, warmup=0)
    _, output = measure("fastem-pigdm", accelerate(net, SpeedOptions("fp32", False, False)), 32, 2, **options)
    same, _ = measure("fastem-pigdm", accelerate(net, SpeedOptions("fp32", True, False)), 32, 2, reference=output, **options)
    assert abs(same["psnr_diff_db"]) < 1e-3 and abs(same["kernel_mse_diff"]) < 1e-9 and same["equal"] is True
    assert same["max_abs_diff"] < 1e-4
    assert same["psnr_diff_max_db"] >= abs(same["psnr_diff_db"]) and same["kernel_mse_diff_max"] >= abs(same["kernel_mse_diff"])


def test_random_prior_draws_the_output_layer_too():
    x, t = torch.rand(1, 3, 32, 32), torch.tensor([500])
    plain = build_prior(TINY, torch.device("cpu")).net
    drawn = build_prior(TINY, torch.device("cpu"), prior="random").net
    assert plain(x, t).abs().max() == 0  # ADM's zero-initialised output layer: ε ≡ 0
    assert drawn(x, t).abs().mean() > 1e-3
    assert torch.equal(drawn.input_blocks[0][0].weight, plain.input_blocks[0][0].weight)  # same seed


def test_equality_separates_mean_and_per_image_differences():
    x = torch.full((2, 3, 8, 8), 0.5)
    kernels = torch.ones(2, 1, 3, 3) / 9
    reference = (x + 0.01, kernels)
    shifted = torch.stack([x[0] + 0.02, x[1] + 0.0025])  # image 0: 6.02 dB worse, image 1: 12.04 dB better
    row = equality((shifted, kernels), reference, x, kernels)
    assert row["psnr_diff_max_db"] == pytest.approx(40 * math.log10(2), abs=1e-3)
    assert row["psnr_diff_db"] == pytest.approx(10 * math.log10(2), abs=1e-3) and row["kernel_mse_diff"] == row["kernel_mse_diff_max"] == 0
    assert row["equal"] is False


def _speed_config(tmp_path, **changes) -> str:
    grid = {
        "title": "tiny", "out": str(tmp_path / "gpu_out"), "unet": "ffhq256", "image_size": 256,
        "methods": ["pigdm", "fastem-pigdm", "blind-dps"], "precisions": ["fp32", "tf32", "bf16"],
        "cpu": {"out": str(tmp_path / "out"), "unet": TINY, "image_size": 32, "kernel_unet": KERNEL_TINY,
                "batches": [1, 2], "precisions": ["fp32", "bf16"], "compile": [False], "channels_last": [False],
                "steps": 2, "repeats": 1, "warmup": 0, **changes},
    }
    path = tmp_path / "speed.yaml"
    path.write_text(yaml.safe_dump({"speed": grid}))
    return str(path)


def test_bench_runs_a_speed_config(tmp_path, capsys):
    main(["bench", "--config", _speed_config(tmp_path), "--methods", "pigdm,blind-dps", "--no-progress"])
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} >= {"speed.csv", "speed.md", "speed.png", "speed.json"}
    rows = list(csv.DictReader((out / "speed.csv").open()))
    assert [(r["precision"], r["batch"], r["method"]) for r in rows] == [
        (p, b, m) for p in ("fp32", "bf16") for b in ("1", "2") for m in ("pigdm", "blind-dps")]
    for r in rows:
        assert r["compiled"] == "False" and r["channels_last"] == "False" and float(r["images_per_sec"]) > 0
        assert (r["psnr_diff_db"] == "nan") == (r["precision"] == "fp32")  # the baseline is the reference
    assert "speed-up" in (out / "speed.md").read_text() and "speed.png" in capsys.readouterr().out


@pytest.mark.parametrize(
    "changes, args, message",
    [
        ({"batchs": [1]}, [], "unknown speed keys ['batchs']"),
        ({"precisions": ["tf32"]}, [], "tf32 needs a CUDA device"),
        ({}, ["--devices", "2"], "one device"),
        ({}, ["--methods", "selfdeblur"], "not in the speed grid"),
    ],
)
def test_bad_speed_config_exits_2(tmp_path, capsys, changes, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--config", _speed_config(tmp_path, **changes), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "out" / "speed.csv").exists()


BENCH_CONFIGS = Path(__file__).parents[1] / "configs" / "bench"


@pytest.mark.parametrize("name", ["speed.yaml", "speed_gpu_quick.yaml"])
def test_shipped_speed_configs_load_for_cpu_and_gpu(name):
    """The shipped speed configs: the CPU section resolves here, the GPU grid is well-formed."""
    import dataclasses

    from fdem.benchmarks.speed_grid import SpeedGrid, is_speed_config, load_grid
    from fdem.method_table import method_names

    path = BENCH_CONFIGS / name
    assert is_speed_config(path)
    grid, device = load_grid(path, torch.device("cpu"))
    assert device.type == "cpu" and grid.options(device)[0][1] == SpeedOptions("fp32", False, False)
    body = {k: v for k, v in yaml.safe_load(path.read_text())["speed"].items() if k != "cpu"}
    gpu = SpeedGrid.from_mapping(body, name)
    assert set(gpu.methods) <= set(method_names()) and gpu.unet == "ffhq256"
    assert {f.name for f in dataclasses.fields(gpu)} >= set(body)


def test_speed_steps_config_times_the_few_step_default_next_to_100_ancestral_steps():
    from fdem.benchmarks.speed_grid import load_grid, variant_label

    grid, device = load_grid(BENCH_CONFIGS / "speed_steps.yaml", torch.device("cpu"))
    labels = [variant_label(v) for v in grid.step_variants]
    assert device.type == "cpu" and labels == ["100 ddpm", "25 ddim η=1 from 0.5", "25 ddim η=1 from 0.5, alternation start, γ=2",
                                               "25 mean η=1 from 0.5"]


@pytest.mark.parametrize("change, message", [({"kernel_relax": 0}, "kernel_relax must be a number in \\(0, 4\\)"),
                                             ({"kernel_init": "gauss"}, "x.yaml: unknown kernel_init 'gauss'"),
                                             ({"kernel_relax": "2"}, "kernel_relax must be")])
def test_a_bad_kernel_option_of_a_step_variant_is_refused(change, message):
    from fdem.benchmarks.speed_grid import check_variant

    with pytest.raises(InputError, match=message):
        check_variant({"method": "fastem-pigdm", "steps": 25, "step_rule": "ddim"} | change, "x.yaml")
