"""Acceptance (issue 13): every bad input to the ``fdem`` command, run as a user runs it (a
subprocess), gives exactly one line ``fdem: error: ...`` on stderr, exit status 2, and leaves no
output behind. Options are checked when argparse reads them, before torch is imported."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest

GUARD = "fdem-test-side-effect"  # printed by the malicious pickle if it ever ran


class RunsCode:
    """Unpickling this object calls ``print``: a checkpoint that would run code."""

    def __reduce__(self):
        return (print, (GUARD,))


def write_inputs(tmp_path) -> None:
    """The files the rows refer to (relative names, the subprocess runs in ``tmp_path``)."""
    (tmp_path / "notes.txt").write_text("not a checkpoint\n")
    (tmp_path / "evil.pt").write_bytes(pickle.dumps({"state_dict": RunsCode()}))
    (tmp_path / "img.png").write_bytes(b"")  # never read: the options are refused first


# name -> (arguments, a phrase the error line must contain); OUT is the output that must not appear
ROWS = {
    "sample --steps 0": (["sample", "--prior", "small64", "--steps", "0", "--out", "OUT.png"], "--steps must be an integer in [2, 1000]"),
    "sample --n 0": (["sample", "--prior", "small64", "--n", "0", "--out", "OUT.png"], "--n must be an integer in [1, 1024]"),
    "sample --prior text file": (["sample", "--prior", "notes.txt", "--out", "OUT.png"], "is not a PyTorch checkpoint (not a zip or pickle file)"),
    "sample --prior code pickle": (["sample", "--prior", "evil.pt", "--out", "OUT.png"], "holds code or objects that are not weights"),
    "sample --out not png": (["sample", "--prior", "small64", "--out", "OUT.jpg"], "expected a .png file name"),
    "kernels --count 0": (["kernels", "--count", "0", "--out", "OUT.npz"], "--count must be an integer in [1, 100000]"),
    "kernels --size 2": (["kernels", "--size", "2", "--out", "OUT.npz"], "--size must be an integer in [3, 255]"),
    "kernels --seed -1": (["kernels", "--seed", "-1", "--out", "OUT.npz"], "--seed must be an integer in [0, "),
    "blur --sigma inf": (["blur", "img.png", "--kernels", "k.npz", "--sigma", "inf", "--out", "OUT"], "--sigma must be a number in [0, 255], got inf"),
    "blur --sigma abc": (["blur", "img.png", "--kernels", "k.npz", "--sigma", "abc", "--out", "OUT"], "argument --sigma: invalid float value: 'abc'"),
    "blur --sigma -1": (["blur", "img.png", "--kernels", "k.npz", "--sigma", "-1", "--out", "OUT"], "--sigma must be a number in [0, 255], got -1"),
    "estimate-kernel --sigma 1e6": (["estimate-kernel", "--sharp", "img.png", "--blurry", "img.png", "--sigma", "1e6",
                                     "--out", "OUT/k.npy"], "--sigma must be a number in [0, 255]"),
    "estimate-kernel --iters 0": (["estimate-kernel", "--sharp", "img.png", "--blurry", "img.png", "--sigma", "5",
                                   "--iters", "0", "--out", "OUT/k.npy"], "--iters must be an integer in [1, 10000]"),
    "bench --config missing.yaml": (["bench", "--config", "missing.yaml", "--out", "OUT"], "missing.yaml"),
    "bench --max-images 0": (["bench", "--config", "demo", "--max-images", "0", "--out", "OUT"], "--max-images must be an integer >= 1"),
    "speed --steps 0": (["speed", "--steps", "0", "--out", "OUT.csv"], "--steps must be an integer in [2, 1000]"),
    "speed --warmup -1": (["speed", "--warmup", "-1", "--out", "OUT.csv"], "--warmup must be an integer in [0, 1000]"),
    "bench-data --sigmas 1e9": (["bench-data", "export", "--images", "bundled", "--sigmas", "5,1e9", "--out", "OUT"],
                                "--sigmas must be a number in [0, 255]"),
    "deblur --preset nope": (["deblur", "img.png", "--sigma", "5", "--preset", "nope", "--out", "OUT"],
                             "unknown preset 'nope': choose one of paper, tuned, few-step, photo, field, demo, relaxed"),
    "deblur --steps 1": (["deblur", "img.png", "--sigma", "5", "--steps", "1", "--out", "OUT"],
                         "steps must be an integer in [2, 1000], got 1"),  # the preset field's name
    "deblur --mode (removed)": (["deblur", "img.png", "--sigma", "5", "--mode", "paper", "--out", "OUT"],
                                "unrecognized arguments: --mode paper"),
    "deblur --preset on a classical method": (["deblur", "img.png", "--sigma", "5", "--method", "l0-anger", "--preset",
                                               "paper", "--out", "OUT"], "--preset applies to the diffusion samplers"),
    "missing required flag": (["blur", "img.png", "--out", "OUT"], "give exactly one of --kernels (a bank) and --fields"),
    "unknown command": (["deblurr", "img.png"], "invalid choice: 'deblurr'"),
    "no command": ([], "the following arguments are required: COMMAND"),
}


def run_fdem(args: list[str], cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([sys.executable, "-m", "fdem.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("row", list(ROWS))
def test_bad_input_is_one_line_exit_2_and_leaves_nothing(tmp_path, row):
    write_inputs(tmp_path)
    before = set(os.listdir(tmp_path))
    args, phrase = ROWS[row]
    proc = run_fdem(args, tmp_path)
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("fdem: error:") and phrase in lines[0], proc.stderr
    assert GUARD not in proc.stdout + proc.stderr  # the malicious pickle never ran
    assert set(os.listdir(tmp_path)) == before  # no output file or folder (OUT*) was made


def test_argparse_errors_point_to_the_subcommand_help(tmp_path):
    proc = run_fdem(["blur", "img.png", "--kernels", "k.npz", "--sigma", "abc", "--out", "OUT"], tmp_path)
    assert proc.stderr.strip().endswith("(see fdem blur --help)") and "usage:" not in proc.stderr


def test_flag_errors_do_not_import_torch(tmp_path):
    """The options are refused by argparse before any heavy module is loaded (a fast answer)."""
    code = ("import sys\nfrom fdem.cli import main\ntry:\n    main(['sample', '--prior', 'x', '--steps', '0', '--out', 'o.png'])\n"
            "except SystemExit as stop:\n    assert stop.code == 2\nassert 'torch' not in sys.modules, 'torch imported'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
