"""The one reader of YAML config files: a mapping, or an :class:`InputError` naming the file."""

from __future__ import annotations

from pathlib import Path

import yaml

from fdem.errors import InputError


def load_yaml(path: str | Path, what: str) -> dict:
    """The mapping in the YAML file ``path`` (an empty file is ``{}``).

    ``what`` names the file in errors (e.g. ``"benchmark config"``): a missing, unreadable or
    unparsable file, or one holding something other than a mapping, is an InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise InputError(f"cannot read {what} {path}: {err.strerror or err}") from err
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise InputError(f"cannot parse {what} {path}: {str(err).splitlines()[0]}") from err
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"{what} {path} must be a mapping, got a {type(data).__name__}")
    return data
