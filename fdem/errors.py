"""The one exception type for bad user input: the CLI prints its message on one line and exits 2."""


class InputError(ValueError):
    """Bad input from a user (file, argument or value); the message names what is wrong."""
