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

from fdem.configio import load_yaml
from fdem.errors import InputError

ACTIONS = ("export",)
# flag destination -> DataModule argument
FLAG_ARGS = {
    "images": "images", "num_images": "num_images", "size": "size", "kernels": "kernels",
    "kernel_size": "kernel_size", "kernel_seed": "kernel_seed", "kernels_per_image": "kernels_per_image",
    "sigmas": "sigmas", "seed": "seed", "from_pickle": "testcases",
}


def sigma_list(text: str) -> list[float]:
    """``"5,10,20"`` or ``"5"`` → floats (the flag may also be repeated: ``--sigmas 5 10 20``)."""
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError as err:
        raise InputError(f"--sigmas: not a number in {text!r}") from err


def add_parsers(sub) -> None:
    """Add the ``bench-data`` sub-command to an ``add_subparsers()`` object."""
    p = sub.add_parser("bench-data", help="export the samples of a blur benchmark as a folder "
                                          "(sharp PNG, blurry .npy, kernel .npy, meta.csv)")
    p.add_argument("action", choices=ACTIONS)
    p.add_argument("--config", help="YAML: BlurBenchmarkDataModule arguments, or a LightningCLI config with data:")
    p.add_argument("--images", help="folder of sharp images, or 'bundled'")
    p.add_argument("--num-images", type=int, help="keep the first N images (sorted by path)")
    p.add_argument("--size", type=int, help="resize the short side and centre-crop to SIZE x SIZE")
    p.add_argument("--kernels", help="kernel generator name (camera-shake, ...) or kernel-bank file/folder")
    p.add_argument("--kernel-size", type=int, help="kernel side (generator default 33)")
    p.add_argument("--kernel-seed", type=int)
    p.add_argument("--kernels-per-image", type=int)
    p.add_argument("--sigmas", nargs="+", help="noise levels, 255 scale: 5 10 20 or 5,10,20")
    p.add_argument("--seed", type=int, help="noise seed: sample i uses seed + i")
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
        kwargs["sigmas"] = [v for text in args.sigmas for v in sigma_list(text)]
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
