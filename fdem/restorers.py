"""Every restoration method behind one interface, so that ``fdem bench`` and ``fdem deblur`` can run
any of them by name (docs/design.md §3).

A restorer is built once (networks loaded, options checked) with ``build_restorer(name, device,
**options)`` and then called on batches: ``restorer.restore(y, sigma, kernel=..., seed=...)`` returns
a :class:`~fdem.restorer_base.Restoration`. Methods live in their own modules and are imported only
when asked for, so a method's heavy dependencies never slow the others down. Names, kinds and option schemas
come from the method table (:mod:`fdem.method_table`).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect

import torch

from fdem.errors import InputError
from fdem.method_table import METHODS, lookup
from fdem.restorer_base import Restorer

# method name → "module:class" (read from the method table); the class takes (method, device, **options).
METHOD_CLASSES: dict[str, str] = {m.name: m.restorer for m in METHODS}


def restorer_class(method: str) -> type[Restorer]:
    """The restorer class of ``method`` (its module imported now)."""
    module, _, name = lookup(method).restorer.partition(":")
    return getattr(importlib.import_module(module), name)


def method_options(method: str) -> list[str]:
    """Every option name ``method``'s restorer takes: a diffusion method's preset, the preset's fields
    and its network options (:meth:`~fdem.sampling.diffusion_restorer.DiffusionRestorer.option_names`); any other
    method's constructor keywords and config fields."""
    cls = restorer_class(method)
    if hasattr(cls, "option_names"):
        return list(cls.option_names())
    named = inspect.signature(cls.__init__).parameters.values()
    schema = [p.name for p in named if p.name not in ("self", "method", "device")
              and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    config = getattr(cls, "config_class", None)
    return schema + [f.name for f in dataclasses.fields(config)] if config is not None else schema


def check_options(method: str, options: dict) -> None:
    """Raise an :class:`InputError` naming the valid options if ``options`` has one ``method`` does not take."""
    valid = list(method_options(method))
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"method {method}: unknown option(s) {unknown}; valid: {', '.join(valid) or 'none'}")


def build_restorer(method: str, device: torch.device | str = "cpu", **options) -> Restorer:
    """The restorer of ``method`` with ``options`` (unknown options are an error naming the valid ones)."""
    check_options(method, options)
    cls = restorer_class(method)
    return cls.from_options(method, device, **options) if hasattr(cls, "from_options") else cls(method, device, **options)

