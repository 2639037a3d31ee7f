"""The argparse program behind every ``fdem`` sub-command; the LightningCLI ones are listed here
too (``fdem fit ...`` is handed to LightningCLI before argparse sees it)."""

from __future__ import annotations

import argparse

from fdem.cli import LIGHTNING_SUBCOMMANDS
from fdem.cli import bench, bench_data, deblur_parser, kernels, metrics, models
from fdem.cli.args import FdemParser

GROUPS = (kernels, bench, deblur_parser, metrics, bench_data, models)  # each has add_parsers(subparsers)
LIGHTNING_HELP = {
    "fit": "train a model (LightningCLI): fdem fit --config X.yaml",
    "validate": "validate a model on a data module (LightningCLI): fdem validate --config X.yaml --ckpt_path C",
    "test": "test a model on a data module (LightningCLI): fdem test --config X.yaml --ckpt_path C",
    "predict": "run a model's predictions (LightningCLI): fdem predict --config X.yaml --ckpt_path C",
}


def version() -> str:
    """The installed distribution's version, else the package's ``__version__``."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("fdem")
    except PackageNotFoundError:
        import fdem

        return fdem.__version__


def cmd_lightning(args: argparse.Namespace) -> None:
    """Hand a LightningCLI sub-command and its arguments to LightningCLI."""
    from fdem.cli import run_lightning

    run_lightning([args.command, *args.lightning_args])


def add_lightning_parsers(sub) -> None:
    """List ``fit``, ``validate``, ``test``, ``predict``; their flags are LightningCLI's."""
    for name in LIGHTNING_SUBCOMMANDS:
        p = sub.add_parser(name, help=LIGHTNING_HELP[name], add_help=False)
        p.add_argument("lightning_args", nargs=argparse.REMAINDER,
                       help=f"LightningCLI arguments (see fdem {name} --help)")
        p.set_defaults(func=cmd_lightning)


def build_parser() -> argparse.ArgumentParser:
    """``fdem`` with the sub-commands of every group module."""
    parser = FdemParser(prog="fdem", description="Fast Diffusion EM: blind deconvolution with diffusion priors.")
    parser.add_argument("--version", action="version", version=f"fdem {version()}", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", title="commands")
    add_lightning_parsers(sub)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def run_command(argv: list[str]) -> None:
    """Parse ``argv`` and run the chosen sub-command."""
    args = build_parser().parse_args(argv)
    args.func(args)
