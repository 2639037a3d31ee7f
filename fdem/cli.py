"""The ``fdem`` command.

``fdem fit|validate|test|predict --config X.yaml`` go to LightningCLI; the other sub-commands are
plain argparse programs in :mod:`fdem.commands`. Bad input (:class:`fdem.errors.InputError`) is
reported on one line and exits with status 2.
"""

from __future__ import annotations

import sys

from fdem.errors import InputError

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "predict")
# LightningCLI writes the resolved config into the log folder; this name never clashes with a
# user's input file (which is usually called config.yaml or lives in configs/).
RESOLVED_CONFIG_NAME = "fdem_resolved_config.yaml"


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


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in LIGHTNING_SUBCOMMANDS:
            run_lightning(argv)
        else:
            from fdem.commands import run_command

            run_command(argv)
    except InputError as err:
        print(f"fdem: error: {err}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("fdem: interrupted; finished work is kept", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
