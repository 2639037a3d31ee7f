"""The generator interface: parameter handling and seeded, per-kernel sampling.

A generator is built from a kernel size and keyword parameters.  Every parameter has a default
(possibly depending on the size); ``params()`` returns all of them, resolved, as plain JSON values,
so ``make_generator(g.name, g.size, **g.params())`` rebuilds the same generator.

Ranges ("spans") are written ``[low, high]`` and drawn per kernel; a single number fixes the value.

Kernel ``i`` of ``sample(n, seed)`` is drawn from its own stream ``np.random.default_rng([seed, i])``
and computed on its own, so it depends only on ``(seed, i)``: a prefix of a larger sample is
bit-identical to the smaller sample.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import torch

from fdem.errors import InputError


GENERATORS: dict[str, type["KernelGenerator"]] = {}  # name → class, filled as subclasses are defined


class KernelGenerator:
    """Base class: subclasses set ``name``, ``defaults(size)``, ``_configure()`` and ``_kernel(rng)``;
    defining a subclass with a ``name`` registers it in :data:`GENERATORS`."""

    name: str = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.name:
            GENERATORS[cls.name] = cls

    def __init__(self, size: int, **params):
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 3:
            raise InputError(f"{self.name}: kernel size must be an integer >= 3, got {size!r}")
        self.size = int(size)
        defaults = self.defaults(self.size)
        unknown = sorted(set(params) - set(defaults))
        if unknown:
            raise InputError(
                f"{self.name}: unknown parameter(s) {', '.join(unknown)}; valid: {', '.join(sorted(defaults))}"
            )
        self._params = {**defaults, **params}
        self._configure()

    @staticmethod
    def defaults(size: int) -> dict:
        """Default parameters for kernels of ``size`` x ``size``."""
        raise NotImplementedError

    def _configure(self) -> None:
        """Check ``self._params`` with the ``_span``/``_number``/... readers and keep what sampling needs."""
        raise NotImplementedError

    def _kernel(self, rng: np.random.Generator) -> np.ndarray:
        """One ``(size, size)`` float64 kernel, non-negative, sum 1, centred, from its own stream."""
        raise NotImplementedError

    def params(self) -> dict:
        """All parameters (defaults included), resolved, JSON-serialisable."""
        return {key: list(value) if isinstance(value, list) else value for key, value in self._params.items()}

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` kernels as a float32 tensor ``(n, 1, size, size)``; kernel ``i`` depends on ``(seed, i)`` only."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise InputError(f"{self.name}: the number of kernels must be an integer >= 0, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise InputError(f"{self.name}: seed must be an integer >= 0, got {seed!r}")
        out = np.empty((int(n), 1, self.size, self.size), dtype=np.float32)
        for i in range(int(n)):
            out[i, 0] = self._kernel(np.random.default_rng([int(seed), i]))
        return torch.from_numpy(out)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size}, **{self.params()})"

    # --- parameter readers: check one entry of self._params, store it back in its JSON form ---

    def _bad(self, key: str, what: str) -> InputError:
        return InputError(f"{self.name}: parameter {key} must be {what}, got {self._params[key]!r}")

    def _number(self, key: str, low: float, high: float, *, open_low: bool = False) -> float:
        """A real number in ``[low, high]`` (``(low, high]`` with ``open_low``)."""
        value = self._params[key]
        if not _within(value, low, high, open_low):
            raise self._bad(key, f"a number in {'(' if open_low else '['}{low:g}, {high:g}]")
        self._params[key] = float(value)
        return float(value)

    def _span(self, key: str, low: float, high: float, *, open_low: bool = False) -> tuple[float, float]:
        """A range ``[a, b]`` with ``low <= a <= b <= high`` (a single number means ``[a, a]``)."""
        value = self._params[key]
        pair = [value, value] if _is_real(value) else value
        ok = isinstance(pair, (list, tuple)) and len(pair) == 2
        ok = ok and all(_within(v, low, high, open_low) for v in pair) and pair[0] <= pair[1]
        if not ok:
            bracket = "(" if open_low else "["
            raise self._bad(key, f"a number or a [low, high] pair (low <= high) within {bracket}{low:g}, {high:g}]")
        self._params[key] = [float(pair[0]), float(pair[1])]
        return float(pair[0]), float(pair[1])

    def _flag(self, key: str) -> bool:
        """A boolean."""
        value = self._params[key]
        if not isinstance(value, (bool, np.bool_)):
            raise self._bad(key, "true or false")
        self._params[key] = bool(value)
        return bool(value)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)) and math.isfinite(value)


def _within(value, low: float, high: float, open_low: bool) -> bool:
    return _is_real(value) and (value > low if open_low else value >= low) and value <= high


def uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    """One draw, uniform on ``span`` (always consumes one number, even for a fixed value)."""
    return float(rng.uniform(span[0], span[1]))


def log_uniform(rng: np.random.Generator, span: tuple[float, float]) -> float:
    """One draw, log-uniform on a positive ``span`` (always consumes one number)."""
    return float(math.exp(rng.uniform(math.log(span[0]), math.log(span[1]))))
