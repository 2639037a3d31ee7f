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


SIGMA255_MAX = 255  # largest noise level accepted on the 255 scale (σ = 1 in [0, 1] units)
MAX_STEPS = 1000  # the T of the schedules the priors are trained with: the most steps a sampler can take
SEED_MAX = 2**32 - 1  # seeds are whole numbers in [0, SEED_MAX] (numpy's and torch's common range)


def _range_text(minimum, maximum, inclusive: bool = True) -> str:
    """``">= 1"``, ``"in [0, 255]"``, ``"> 0"``, ...: the allowed range in words."""
    low, high = ("[", "]") if inclusive else ("(", ")")
    if minimum is not None and maximum is not None:
        return f"in {low}{minimum:g}, {maximum:g}{high}"
    if minimum is not None:
        return f"{'>=' if inclusive else '>'} {minimum:g}"
    if maximum is not None:
        return f"{'<=' if inclusive else '<'} {maximum:g}"
    return "finite"


def check_int(value, flag: str, minimum: int | None = 1, maximum: int | None = None) -> int:
    """``value`` as an int if it is a whole number in ``[minimum, maximum]`` (None: unbounded);
    else an :class:`InputError` naming ``flag`` and the range."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if ok and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return int(value)
    raise InputError(f"{flag} must be an integer {_range_text(minimum, maximum)}, got {value!r}")


def check_float(value, flag: str, minimum: float | None = None, maximum: float | None = None,
                inclusive: bool = True) -> float:
    """``value`` as a float if it is finite and within the bounds (``inclusive``: bounds allowed);
    else an :class:`InputError` naming ``flag`` and the range."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value):
        number = float(value)
        above = minimum is None or (number >= minimum if inclusive else number > minimum)
        below = maximum is None or (number <= maximum if inclusive else number < maximum)
        if above and below:
            return number
    qualifier = "a finite number" if minimum is None and maximum is None else f"a number {_range_text(minimum, maximum, inclusive)}"
    raise InputError(f"{flag} must be {qualifier}, got {value!r}")


def check_sigma255(value, flag: str = "--sigma") -> float:
    """A noise level given on the 255 scale, checked to lie in ``[0, SIGMA255_MAX]``, in ``[0, 1]`` units."""
    return check_float(value, flag, 0, SIGMA255_MAX) / 255
