"""``python -m fdem.cli``: the ``fdem`` command."""

from fdem.cli import main

main()
