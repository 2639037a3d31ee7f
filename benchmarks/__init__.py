"""Benchmarks, studies and check scripts (installed as ``fdem.benchmarks``)."""

import sys
from typing import Callable

from fdem.errors import InputError


def run_script(main: Callable[[], None]) -> None:
    """Run a script's ``main``: bad input (an :class:`InputError`) ends in one line on stderr and
    exit status 2, as in the ``fdem`` command, instead of a traceback."""
    try:
        main()
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
