"""The package installs like a real one: a wheel built from the checkout, installed into a fresh
venv outside it, runs a short benchmark from a temporary directory (issue 12, item 7).

The fresh venv has no pip and no copy of the dependencies: a ``.pth`` line points it at the test
environment's site-packages (a path line only: that folder's own ``.pth`` files, among them the
editable install's finder, are not run), so the ``fdem`` it imports can only be the wheel's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
GENERIC_NAMES = ("benchmarks", "datamodules", "kernels_gen", "configs")


def _source_tree(dest: Path) -> Path:
    """The checkout's files (tracked and untracked-but-not-ignored) copied to ``dest``."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, listed):
        src = REPO / os.fsdecode(name)
        if src.is_file():
            target = dest / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(src.read_bytes())
    return dest


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> tuple[Path, Path]:
    """(the wheel, the bin folder of a fresh venv with it installed)."""
    if not (REPO / ".git").exists():
        pytest.fail("the wheel test builds from a git checkout")
    root = tmp_path_factory.mktemp("wheel")
    source = _source_tree(root / "src")
    dist = root / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet", "-w", str(dist),
                    str(source)], check=True, capture_output=True, timeout=600)
    (wheel,) = dist.glob("fdem-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    site = Path(subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    (site / "fdem_test_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "--quiet",
                    "--no-deps", "--no-index", str(wheel)], check=True, capture_output=True, timeout=300)
    return wheel, venv / "bin"


def test_wheel_squats_no_generic_top_level_names(wheel_env):
    wheel, _ = wheel_env
    tops = {name.split("/")[0] for name in zipfile.ZipFile(wheel).namelist()}
    assert not tops & set(GENERIC_NAMES), tops
    names = zipfile.ZipFile(wheel).namelist()
    assert "fdem/configs/bench/demo.yaml" in names and "fdem/benchmarks/run.py" in names


def test_wheel_holds_none_of_the_studies(wheel_env):
    """studies/ (one-off studies, run from the checkout) is in the source tree the wheel is built
    from, and none of its files is in the wheel, under any folder."""
    wheel, _ = wheel_env
    scripts = {p.name for p in (REPO / "studies").rglob("*.py") if p.name not in ("__init__.py", "common.py")}
    assert {"fastem_study.py", "deblur_check.py"} <= scripts
    names = zipfile.ZipFile(wheel).namelist()
    leaked = [n for n in names if "studies" in n.split("/")[:-1] or n.rsplit("/", 1)[-1] in scripts]
    assert not leaked, leaked
    assert "fdem/benchmarks/kernel_estimation.py" in names  # the harness stays


def test_installed_wheel_runs_a_benchmark_from_anywhere(wheel_env, tmp_path):
    _, bin_dir = wheel_env
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
    where = subprocess.run([str(bin_dir / "python"), "-c", "import fdem, fdem.benchmarks; print(fdem.__file__)"],
                           cwd=tmp_path, capture_output=True, text=True, env=env, check=True).stdout
    assert str(REPO) not in where and "site-packages" in where
    for argv in (["demo"], ["bench", "--config", "demo"]):
        out = tmp_path / argv[0]
        run = subprocess.run([str(bin_dir / "fdem"), *argv, "--methods", "l0-anger", "--max-images", "1", "--devices", "1",
                              "--strategy", "auto", "--no-progress", "--out", str(out)],
                             cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
        assert (out / "table1.md").is_file() and "l0-anger" in (out / "table1.md").read_text()
