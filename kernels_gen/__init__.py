"""Blur-kernel synthesis: trajectory models, one shared rasteriser, and kernel banks on disk.

>>> g = make_generator("camera-shake", size=33)
>>> k = g.sample(16, seed=0)          # float32 (16, 1, 33, 33), sum 1, centred at (16, 16)

Generators: ``camera-shake`` (default, the paper's kind), ``motion`` (DPS-style, ``intensity``),
``trajectory`` (Boracchi-Foi, ``anxiety``, ``exposure``), ``gaussian``.
"""

from __future__ import annotations

import importlib
import pkgutil

from fdem.errors import InputError

from .bank import load_bank, save_bank
from .base import GENERATORS, KernelGenerator
from .camera_shake import CameraShake  # noqa: F401  (the default generator registers first)
from .preview import save_preview
from .stats import kernel_stats

# Every module of this package is imported, so a new generator module registers itself (a
# KernelGenerator subclass with a ``name``): adding one touches its module and its test only.
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")


def make_generator(name: str, size: int, **params) -> KernelGenerator:
    """The generator ``name`` for ``size`` x ``size`` kernels; ``params`` override its defaults."""
    if not isinstance(name, str) or name not in GENERATORS:
        raise InputError(f"unknown kernel generator {name!r}; valid: {', '.join(GENERATORS)}")
    return GENERATORS[name](size, **params)


__all__ = ["GENERATORS", "KernelGenerator", "kernel_stats", "load_bank", "make_generator", "save_bank", "save_preview"]
