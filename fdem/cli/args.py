"""Argument helpers shared by the sub-commands: flag value types and the shipped configs' folder."""

from __future__ import annotations

import argparse
from pathlib import Path

import fdem.configs
from fdem.validate import check_sigma

REPO_CONFIGS = Path(fdem.configs.__file__).parent  # installed with the package (package data)


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` → ``(KEY, VALUE parsed as YAML)``."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def sigma255(value: float, flag: str = "--sigma") -> float:
    """A noise-level flag on the 255 scale, checked, in ``[0, 1]`` units."""
    return check_sigma(value, flag) / 255


def summary(func) -> str:
    """The first line of ``func``'s docstring (a sub-command's help)."""
    return func.__doc__.splitlines()[0]
