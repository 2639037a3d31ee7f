"""The ``fdem`` command, the front end above the library: it parses flags, reads and writes files
and prints; no library module imports it.

``fdem fit|validate|test|predict --config X.yaml`` go to LightningCLI (and are listed in
``fdem --help``); the other sub-commands are plain argparse programs (:mod:`fdem.cli.parser`) whose
numeric flags are checked as they are read (:mod:`fdem.cli.args`). Bad input (a parser error or an
:class:`fdem.errors.InputError`) is reported on one line and exits with status 2; warnings raised by this project's own code are
printed on one line ``fdem: warning: ...`` (not with the source line Python adds).
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

from fdem.errors import InputError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# LightningCLI writes the resolved config into the log folder; this name never clashes with a
# user's input file (which is usually called config.yaml or lives in configs/).
RESOLVED_CONFIG_NAME = "fdem_resolved_config.yaml"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
OWN_PACKAGES = ("fdem", "benchmarks", "datamodules", "kernels_gen")


def run_lightning(argv: list[str]) -> None:
    """LightningCLI over every LightningModule / LightningDataModule (chosen by ``class_path``)."""
    import lightning as L
    from lightning.pytorch.cli import LightningCLI

    LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_kwargs={"config_filename": RESOLVED_CONFIG_NAME, "overwrite": True},
        args=argv,
    )


def is_own_code(filename: str) -> bool:
    """Whether ``filename`` is a module of this project (not of an installed dependency)."""
    try:
        relative = Path(filename).resolve().relative_to(PROJECT_ROOT)
    except ValueError:
        return False
    return relative.parts[0] in OWN_PACKAGES


_python_format = warnings.formatwarning


def format_warning(message, category, filename, lineno, line=None) -> str:
    """One line for the project's warnings; Python's usual format for everybody else's."""
    if is_own_code(filename):
        return f"fdem: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``fdem`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    warnings.formatwarning = format_warning
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            run_lightning(argv)
        else:
            from fdem.cli.parser import run_command

            run_command(argv)
    except InputError as err:
        print(f"fdem: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("fdem: interrupted; finished work is kept", file=sys.stderr)
        sys.exit(130)
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        print(f"fdem: error: out of memory ({str(err).splitlines()[0][:200] or type(err).__name__}); use smaller "
              "images, fewer particles or a lighter method (finished work is kept)", file=sys.stderr)
        sys.exit(2)


def is_out_of_memory(err: BaseException) -> bool:
    """Whether ``err`` is the host's MemoryError or an accelerator's out-of-memory error (torch's
    ``OutOfMemoryError`` is a RuntimeError), without importing torch."""
    torch = sys.modules.get("torch")
    return isinstance(err, MemoryError) or (torch is not None and isinstance(err, torch.OutOfMemoryError))
