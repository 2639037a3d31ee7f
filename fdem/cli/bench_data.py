"""``fdem bench-data export``: write a benchmark's samples as a plain folder (:mod:`fdem.testcases`).

The samples are those of a :class:`fdem.datamodules.blur_benchmark.BlurBenchmarkDataModule`, configured
by ``--config`` (its init arguments: a plain mapping, or a LightningCLI config with a ``data:``
section) and/or flags (a flag overrides the config); ``--from-pickle`` converts the authors'
test cases instead. The folder is written atomically (complete or absent).
"""

from __future__ import annotations

import argparse
import inspect
from pathlib import Path

from fdem.cli.args import KERNEL_SIZE_MAX, Checked, add_int, add_kernel_size, add_seed
from fdem.configio import load_yaml
from fdem.errors import InputError
from fdem.validate import SIGMA255_MAX, check_float

ACTIONS = ("export",)
# flag destination -> DataModule argument
FLAG_ARGS = {
    "images": "images", "num_images": "num_images", "size": "size", "kernels": "kernels",
    "kernel_size": "kernel_size", "kernel_seed": "kernel_seed", "kernels_per_image": "kernels_per_image",
    "sigmas": "sigmas", "seed": "seed", "from_pickle": "testcases",
}


def sigma_list(text: str, flag: str = "--sigmas") -> list[float]:
    """``"5,10,20"`` or ``"5"`` → floats, each in ``[0, SIGMA255_MAX]`` (the flag may also be
    repeated: ``--sigmas 5 10 20``)."""
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise InputError(f"{flag}: not a number in {text!r}") from err
    return [check_float(v, flag, 0, SIGMA255_MAX) for v in values]


def add_parsers(sub) -> None:
    """Add the ``bench-data`` sub-command to an ``add_subparsers()`` object."""
    p = sub.add_parser("bench-data", help="export the samples of a blur benchmark as a folder "
                                          "(sharp PNG, blurry .npy, kernel .npy, meta.csv)")
    p.add_argument("action", choices=ACTIONS, help="export: write the samples to --out")
    p.add_argument("--config", help="YAML: BlurBenchmarkDataModule arguments, or a LightningCLI config with data:")
    p.add_argument("--images", help="folder of sharp images, or 'bundled'")
    add_int(p, "--num-images", help="keep the first N images (sorted by path), N >= 1")
    add_int(p, "--size", maximum=4096, help="resize the short side and centre-crop to SIZE x SIZE, in [1, 4096]")
    p.add_argument("--kernels", help="kernel generator name (camera-shake, ...) or kernel-bank file/folder")
    add_kernel_size(p, "--kernel-size", help=f"kernel side, in [3, {KERNEL_SIZE_MAX}] (generator default 33)")
    add_seed(p, "--kernel-seed", help="seed of the kernel bank: kernel j depends on (seed, j) only (default 0)")
    add_int(p, "--kernels-per-image", maximum=10_000, help="kernels per image, in [1, 10000] (default 1)")
    p.add_argument("--sigmas", nargs="+", action=Checked, check=sigma_list,
                   help=f"noise levels, 255 scale, in [0, {SIGMA255_MAX}]: 5 10 20 or 5,10,20 (default 5 10 20)")
    add_seed(p, "--seed", help="noise seed: sample i uses seed + i (default 0)")
    p.add_argument("--from-pickle", help="the authors' test-case pickle (or a folder of them) to convert")
    p.add_argument("--out", required=True, help="output folder (created; must be empty unless --force)")
    p.add_argument("--force", action="store_true", help="replace an existing output folder")
    p.set_defaults(func=cmd_bench_data)


def read_config(path: str) -> dict:
    """The DataModule arguments in a YAML file (plain, or LightningCLI's ``data: {init_args: ...}``)."""
    cfg = load_yaml(path, "--config")
    cfg = cfg.get("data", cfg)
    if isinstance(cfg, dict) and "class_path" in cfg:
        if not str(cfg["class_path"]).endswith("BlurBenchmarkDataModule"):
            raise InputError(f"--config {path}: data is a {cfg['class_path']}, not a BlurBenchmarkDataModule")
        cfg = cfg.get("init_args") or {}
    if not isinstance(cfg, dict):
        raise InputError(f"--config {path}: expected a mapping of BlurBenchmarkDataModule arguments")
    return dict(cfg)


def datamodule_args(args: argparse.Namespace) -> dict:
    """Config values overridden by the flags given; unknown config keys are errors."""
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    kwargs = read_config(args.config) if args.config else {}
    valid = set(inspect.signature(BlurBenchmarkDataModule.__init__).parameters) - {"self"}
    unknown = sorted(set(kwargs) - valid)
    if unknown:
        raise InputError(f"--config {args.config}: unknown argument(s) {', '.join(unknown)}; "
                         f"valid: {', '.join(sorted(valid))}")
    for flag, name in FLAG_ARGS.items():
        value = getattr(args, flag, None)
        if value is not None:
            kwargs[name] = value
    if getattr(args, "sigmas", None) is not None:
        kwargs["sigmas"] = [v for values in args.sigmas for v in values]  # lists checked by the parser
    if getattr(args, "from_pickle", None) is not None:
        kwargs.pop("images", None)  # the pickle brings its own images, kernels and σ
    kwargs.setdefault("images", None)
    return kwargs


def cmd_bench_data(args: argparse.Namespace) -> None:
    """Export (the only action): write every sample of the configured benchmark to ``--out``."""
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule
    from fdem.testcases import write_testcase_folder

    dm = BlurBenchmarkDataModule(**datamodule_args(args))
    dm.setup("predict")
    data = dm.dataset
    count = write_testcase_folder(Path(args.out), (data[i] for i in range(len(data))), overwrite=args.force)
    for path, reason in dm.skipped:
        print(f"skipped {path}: {reason}")
    print(f"{dm.samples_summary()}; wrote {count} to {args.out}")
