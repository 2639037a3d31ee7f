"""Checks of user values, made once where a value enters the library (CLI flag, config, public call)."""

from __future__ import annotations

import math
import numbers

from fdem.errors import InputError


def _flat(value) -> list:
    """The numbers of a number, a (nested) sequence, a tensor or an array, as one list."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [v for item in value for v in _flat(item)]
    return [value]


def check_sigma(value, name: str = "sigma"):
    """Return ``value`` (a number, a sequence of numbers or a tensor) if every noise level in it is
    a finite number ``>= 0``; else raise an :class:`InputError` naming ``name``."""
    for v in _flat(value):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (math.isfinite(v) and v >= 0):
            raise InputError(f"{name} must be >= 0, got {value}")
    return value
