"""Blur-kernel synthesis: trajectory models, one shared rasteriser, and kernel banks on disk.

>>> g = make_generator("camera-shake", size=33)
>>> k = g.sample(16, seed=0)          # float32 (16, 1, 33, 33), sum 1, centred at (16, 16)

Generators: ``camera-shake`` (default, the paper's kind), ``motion`` (DPS-style, ``intensity``),
``trajectory`` (Boracchi-Foi, ``anxiety``, ``exposure``), ``gaussian``.
"""

from __future__ import annotations

from fdem.errors import InputError

from .bank import load_bank, save_bank
from .base import KernelGenerator
from .camera_shake import CameraShake
from .gaussian import Gaussian
from .motion import Motion
from .preview import save_preview
from .stats import kernel_stats
from .trajectory import Trajectory

GENERATORS: dict[str, type[KernelGenerator]] = {cls.name: cls for cls in (CameraShake, Motion, Trajectory, Gaussian)}


def make_generator(name: str, size: int, **params) -> KernelGenerator:
    """The generator ``name`` for ``size`` x ``size`` kernels; ``params`` override its defaults."""
    if not isinstance(name, str) or name not in GENERATORS:
        raise InputError(f"unknown kernel generator {name!r}; valid: {', '.join(GENERATORS)}")
    return GENERATORS[name](size, **params)


__all__ = ["GENERATORS", "KernelGenerator", "kernel_stats", "load_bank", "make_generator", "save_bank", "save_preview"]
