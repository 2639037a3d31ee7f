"""Argument helpers shared by the sub-commands: the parser class (one-line errors, defaults in the
help), checked numeric flags, flag value types and the shipped configs' folder.

A numeric flag is checked where it enters, when argparse reads it (:class:`Checked`): a value out
of range is a one-line parser error naming the flag and the allowed range, before any heavy module
is imported or anything is written.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import fdem.configs
from fdem.errors import InputError
from fdem.validate import MAX_STEPS, SEED_MAX, SIGMA255_MAX, check_float, check_int

REPO_CONFIGS = Path(fdem.configs.__file__).parent  # installed with the package (package data)
KERNEL_SIZE_MAX = 255  # the largest kernel side a flag accepts


class DefaultsFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it has no default or already says one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if "default" in text or any(default is v for v in (None, False, argparse.SUPPRESS)) or not action.option_strings:
            return text
        return f"{text} (default: {default})"


class FdemParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line, ``fdem: error: ... (see PROG --help)``, exit 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", DefaultsFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        print(f"fdem: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


class Checked(argparse.Action):
    """Store a flag's value (each value, for a list) as ``check(value, flag, **bounds)`` returns it;
    a refused value is a parser error."""

    def __init__(self, option_strings, dest, check=None, bounds=None, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.check, self.bounds = check, dict(bounds or {})

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            if isinstance(values, list):
                values = [self.check(v, option_string, **self.bounds) for v in values]
            else:
                values = self.check(values, option_string, **self.bounds)
        except InputError as err:
            parser.error(str(err))
        setattr(namespace, self.dest, values)


def add_int(p: argparse.ArgumentParser, *names: str, minimum: int | None = 1, maximum: int | None = None, **kwargs):
    """An integer flag checked to lie in ``[minimum, maximum]`` (None: unbounded)."""
    return p.add_argument(*names, type=int, action=Checked, check=check_int,
                          bounds={"minimum": minimum, "maximum": maximum}, **kwargs)


def add_float(p: argparse.ArgumentParser, *names: str, minimum: float | None = None, maximum: float | None = None,
              inclusive: bool = True, **kwargs):
    """A finite float flag checked to lie within the bounds."""
    return p.add_argument(*names, type=float, action=Checked, check=check_float,
                          bounds={"minimum": minimum, "maximum": maximum, "inclusive": inclusive}, **kwargs)


def add_sigma(p: argparse.ArgumentParser, *names: str, **kwargs):
    """A noise-level flag on the 255 scale, in ``[0, SIGMA255_MAX]`` (stored on the 255 scale)."""
    kwargs.setdefault("help", f"noise level, 255 scale, in [0, {SIGMA255_MAX}]")
    return add_float(p, *names, minimum=0, maximum=SIGMA255_MAX, **kwargs)


def add_seed(p: argparse.ArgumentParser, *names: str, **kwargs):
    """A seed flag, a whole number in ``[0, SEED_MAX]``."""
    return add_int(p, *names, minimum=0, maximum=SEED_MAX, **kwargs)


def add_steps(p: argparse.ArgumentParser, *names: str, **kwargs):
    """A diffusion step-count flag in ``[2, MAX_STEPS]`` (respacing needs two steps at least)."""
    return add_int(p, *names, minimum=2, maximum=MAX_STEPS, **kwargs)


def add_kernel_size(p: argparse.ArgumentParser, *names: str, **kwargs):
    """A kernel-side flag in ``[3, KERNEL_SIZE_MAX]``."""
    kwargs.setdefault("help", f"kernel side, in [3, {KERNEL_SIZE_MAX}]")
    return add_int(p, *names, minimum=3, maximum=KERNEL_SIZE_MAX, **kwargs)


def key_value(text: str) -> tuple[str, object]:
    """``KEY=VALUE`` → ``(KEY, VALUE parsed as YAML)``."""
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def summary(func) -> str:
    """The first line of ``func``'s docstring (a sub-command's help)."""
    return func.__doc__.splitlines()[0]


def output_file(suffix: str):
    """An argparse type: a file name that must end in ``suffix`` (checked before anything runs)."""

    def parse(text: str) -> str:
        if Path(text).suffix.lower() != suffix:
            raise argparse.ArgumentTypeError(f"expected a {suffix} file name, got {text!r}")
        return text

    parse.__name__ = f"{suffix} file"
    return parse
