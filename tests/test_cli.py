"""The fdem command: kernel banks, blur / estimate-kernel round trip, and bad input (one line, exit 2)."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.io
import torch

from fdem.cli import main
from fdem.imageio import save_image


def run_cli(args, capsys):
    """Run ``fdem args``; return (exit code, stdout, stderr)."""
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as stop:
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def sharp_png(tmp_path):
    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 8, 8, generator=g).repeat_interleave(8, -1).repeat_interleave(8, -2)
    save_image(tmp_path / "sharp.png", img)
    return tmp_path / "sharp.png"


def test_kernels_bank_is_deterministic(tmp_path, capsys):
    for name in ("a", "b"):
        code, _, _ = run_cli(["kernels", "--generator", "motion", "--size", "17", "--count", "5", "--seed", "3",
                              "--out", tmp_path / f"{name}.npz", "--preview", tmp_path / f"{name}.png"], capsys)
        assert code == 0
    a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
    assert a["kernels"].dtype == np.float32 and a["kernels"].shape == (5, 17, 17)
    assert a["kernels"].tobytes() == b["kernels"].tobytes()
    assert (tmp_path / "a.png").stat().st_size > 0


def test_blur_then_estimate_kernel(tmp_path, sharp_png, capsys):
    bank = tmp_path / "bank.npz"
    assert run_cli(["kernels", "--size", "9", "--count", "1", "--out", bank], capsys)[0] == 0
    assert run_cli(["blur", sharp_png, "--kernels", bank, "--sigma", "2", "--out", tmp_path / "obs"], capsys)[0] == 0
    code, out, err = run_cli(["estimate-kernel", "--sharp", sharp_png, "--blurry", tmp_path / "obs" / "sharp_blurry.npy",
                              "--sigma", "2", "--kernel-size", "9", "--out", tmp_path / "k.npy"], capsys)
    assert code == 0, err
    est = torch.from_numpy(np.load(tmp_path / "k.npy"))[None, None]
    truth = torch.from_numpy(np.load(tmp_path / "obs" / "sharp_kernel.npy"))[None, None]
    from fdem.kernel_ops import dirac, kernel_mse

    assert kernel_mse(est, truth) < 0.2 * kernel_mse(dirac(1, 9), truth)


def _bad_cases(tmp_path, sharp_png):
    (tmp_path / "notimage.png").write_text("hello")
    (tmp_path / "empty").mkdir()
    big = tmp_path / "big.npz"
    np.savez(big, kernels=np.ones((1, 80, 80), np.float32))
    nan = tmp_path / "nan.mat"
    k = np.ones((5, 5))
    k[2, 2] = np.nan
    scipy.io.savemat(nan, {"kernel": k})
    nokernel = tmp_path / "nokernel.mat"
    scipy.io.savemat(nokernel, {"name": "levin"})
    bank = tmp_path / "ok.npz"
    np.savez(bank, kernels=np.ones((1, 5, 5), np.float32))
    listing = tmp_path / "listing.yaml"
    listing.write_text("- 1\n- 2\n")
    out = tmp_path / "out"
    return {
        "non-image file": (["blur", tmp_path / "notimage.png", "--kernels", bank, "--out", out], "notimage.png"),
        "empty folder": (["kernel-bench", "--images", tmp_path / "empty", "--out", out], "empty"),
        "kernel larger than image": (["blur", sharp_png, "--kernels", big, "--out", out], "larger"),
        "negative sigma": (["blur", sharp_png, "--kernels", bank, "--sigma", "-1", "--out", out], "--sigma"),
        "NaN sigma": (["estimate-kernel", "--sharp", sharp_png, "--blurry", sharp_png, "--sigma", "nan",
                       "--out", out / "k.npy"], "--sigma must be a number in [0, 255], got nan"),
        "NaN in a kernel": (["blur", sharp_png, "--kernels", nan, "--out", out], "nan.mat"),
        ".mat without kernels": (["blur", sharp_png, "--kernels", nokernel, "--out", out], "nokernel.mat"),
        "unknown generator": (["kernels", "--generator", "wobble", "--out", tmp_path / "k.npz"], "wobble"),
        "config not a mapping": (["kernel-bench", "--config", listing, "--out", out], "listing.yaml must be a mapping"),
        "unknown device": (["kernel-bench", "--device", "toaster", "--out", out], "--device: unknown device"),
    }


@pytest.mark.parametrize("case", ["non-image file", "empty folder", "kernel larger than image", "negative sigma", "NaN sigma",
                                  "NaN in a kernel", ".mat without kernels", "unknown generator",
                                  "config not a mapping", "unknown device"])
def test_bad_input_gives_one_line_and_exit_2(tmp_path, sharp_png, capsys, case):
    args, needle = _bad_cases(tmp_path, sharp_png)[case]
    code, _, err = run_cli(args, capsys)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("fdem: error:") and needle in lines[0], err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_resolve_device_refuses_absent_devices():
    from fdem.devices import default_device, resolve_device
    from fdem.errors import InputError

    assert resolve_device(None) == resolve_device("auto") == default_device()
    assert resolve_device("cpu") == torch.device("cpu")
    absent = "mps" if default_device().type != "mps" else "cuda"
    with pytest.raises(InputError, match=f"--gpu: device {absent} is not available"):
        resolve_device(absent, "--gpu")
    if default_device().type != "cpu":  # an index past the machine's device count
        with pytest.raises(InputError, match="not available"):
            resolve_device(f"{default_device().type}:99")


def test_console_script_entry_point(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fdem.cli", "kernels", "--size", "2", "--out", str(tmp_path / "k.npz")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "size" in proc.stderr and not (tmp_path / "k.npz").exists()


def test_own_warnings_are_one_line_and_others_keep_their_source(tmp_path):
    from fdem import cli

    own = cli.format_warning("metric lpips unavailable (NaN): put alexnet.pth in X", UserWarning,
                             str(cli.PROJECT_ROOT / "fdem" / "metrics" / "suite.py"), 58)
    assert own == "fdem: warning: metric lpips unavailable (NaN): put alexnet.pth in X\n"
    theirs = cli.format_warning("deprecated", DeprecationWarning, str(tmp_path / "lib.py"), 3, "x = 1")
    assert theirs.startswith(str(tmp_path / "lib.py") + ":3: DeprecationWarning: deprecated")


def _subparsers(parser):
    """``{name: parser}`` of every sub-command of ``parser``."""
    import argparse

    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return sub.choices


def test_every_option_of_every_subcommand_has_help_and_shows_its_default():
    from fdem.cli import LIGHTNING_SUBCOMMANDS
    from fdem.cli.parser import build_parser

    commands = _subparsers(build_parser())
    assert set(LIGHTNING_SUBCOMMANDS) <= set(commands)
    for name, sub in commands.items():
        formatter = sub._get_formatter()
        for action in sub._actions:
            if action.dest == "help":
                continue
            assert action.help and action.help.strip(), f"fdem {name} {action.option_strings or action.dest}: no help"
            shown = formatter._get_help_string(action)
            if action.option_strings and action.default not in (None, False):
                assert "default" in shown, f"fdem {name} {action.option_strings}: default not shown"


def test_top_level_help_lists_every_subcommand_and_version(capsys):
    from fdem.cli.parser import build_parser

    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for name in _subparsers(build_parser()):
        assert name in out
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.startswith("fdem ") and out.split()[1][0].isdigit()


def test_blur_failing_at_the_first_write_leaves_no_folder(tmp_path, sharp_png, capsys, monkeypatch):
    import fdem.imageio

    bank = tmp_path / "bank.npz"
    assert run_cli(["kernels", "--size", "5", "--count", "1", "--out", bank], capsys)[0] == 0

    def refuse(path, img):
        raise fdem.errors.InputError(f"cannot write {path}: disk full")

    monkeypatch.setattr(fdem.imageio, "save_image", refuse)
    code, _, err = run_cli(["blur", sharp_png, "--kernels", bank, "--out", tmp_path / "a" / "obs"], capsys)
    assert code == 2 and "disk full" in err and not (tmp_path / "a").exists()


def test_sample_steps_above_the_priors_T_is_refused(capsys, tmp_path):
    code, _, err = run_cli(["sample", "--prior", "small64", "--T", "50", "--steps", "100", "--n", "1",
                            "--out", tmp_path / "s.png"], capsys)
    assert code == 2 and "--steps must be an integer in [2, 50]" in err and not (tmp_path / "s.png").exists()


def test_presets_prints_every_preset_and_the_table_of_their_resolved_options(capsys):
    from fdem.presets import PRESETS

    code, out, err = run_cli(["presets"], capsys)
    assert code == 0, err
    for name, preset in PRESETS.items():
        assert f"{name}: {preset.summary}" in out
    table = [[c.strip() for c in line.strip("|").split("|")] for line in out.splitlines() if line.startswith("|")]
    assert table[0] == ["option", *PRESETS] and set(table[1]) == {"---"}
    rows = {row[0]: dict(zip(PRESETS, row[1:])) for row in table[2:]}
    assert all(len(row) == len(PRESETS) for row in rows.values())
    assert rows["steps"] == {"paper": "100", "tuned": "100", "few-step": "25", "photo": "25", "field": "25", "demo": "25", "relaxed": "25"}
    assert rows["kernel_grid"]["field"] == "3x3" and rows["kernel_grid"]["photo"] == "1x1"
    assert (rows["recenter"]["paper"], rows["recenter"]["tuned"]) == ("spline", "bilinear")
    assert (rows["lam_rule"]["paper"], rows["lam_rule"]["tuned"]) == ("fixed", "noise")
    assert rows["border"]["photo"] == "impute" and rows["tiled"]["photo"] == "True" and rows["border"]["few-step"] == "circular"
    assert rows["restarts"]["demo"] == "3" and rows["kernel_relax"]["relaxed"] == "2.0"
    assert rows["kernel_init"]["few-step"] == "alternation" and rows["lam"]["paper"] == "—"
    code, out, err = run_cli(["presets", "--method", "dps"], capsys)
    rows = {line.split("|")[1].strip(): line for line in out.splitlines() if line.startswith("| ")}
    assert code == 0 and set(rows["steps"].split("|")[2:-1]) == {" 1000 "}  # DPS: 1000 ancestral steps under every preset
    assert "kernel_init" not in rows and "restarts" in rows  # non-blind: no kernel options


def test_out_of_memory_anywhere_is_one_line(monkeypatch, capsys):
    """A command running out of memory prints one line and exits 2 (no traceback)."""
    import torch

    import fdem.cli.parser as parser
    from fdem.cli import main

    def exhausted(argv):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 12.8 GiB")

    monkeypatch.setattr(parser, "run_command", exhausted)
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--config", "demo"])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fdem: error: out of memory")
    monkeypatch.setattr(parser, "run_command", lambda argv: (_ for _ in ()).throw(RuntimeError("other")))
    with pytest.raises(RuntimeError, match="other"):
        main(["bench", "--config", "demo"])
