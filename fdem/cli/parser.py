"""The argparse program behind every ``fdem`` sub-command that is not LightningCLI's."""

from __future__ import annotations

import argparse

from fdem.cli import bench, bench_data, deblur, kernels, metrics, models

GROUPS = (kernels, bench, deblur, metrics, bench_data, models)  # each has add_parsers(subparsers)


def build_parser() -> argparse.ArgumentParser:
    """``fdem`` with the sub-commands of every group module."""
    parser = argparse.ArgumentParser(
        prog="fdem",
        description="Fast Diffusion EM. Training: fdem fit|validate|test|predict --config X.yaml (LightningCLI).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for group in GROUPS:
        group.add_parsers(sub)
    return parser


def run_command(argv: list[str]) -> None:
    """Parse ``argv`` and run the chosen sub-command."""
    args = build_parser().parse_args(argv)
    args.func(args)
