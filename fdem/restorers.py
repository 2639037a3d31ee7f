"""Every restoration method behind one interface, so that ``fdem bench`` and ``fdem deblur`` can run
any of them by name (DESIGN.md §3).

A restorer is built once (networks loaded, options checked) with ``build_restorer(name, device,
**options)`` and then called on batches: ``restorer.restore(y, sigma, kernel=..., seed=...)`` returns
a :class:`Restoration`. Methods live in their own modules and are imported only when asked for,
so a method's heavy dependencies never slow the others down.
"""

from __future__ import annotations

import importlib
import inspect
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor

from fdem.errors import InputError

# method name → "module:class"; the class takes (method, device, **options).
METHOD_CLASSES: dict[str, str] = {
    **{
        name: "fdem.sampling.restorer:DiffusionRestorer"
        for name in ("dps", "pigdm", "fastem-dps", "fastem-pigdm", "diffem-dps", "diffem-pigdm")
    },
    "blind-dps": "fdem.sampling.blind_dps:BlindDPSRestorer",
    "l0-anger": "fdem.baselines.l0_anger:L0AngerRestorer",
    "selfdeblur": "fdem.baselines.selfdeblur:SelfDeblurRestorer",
    "mprnet": "fdem.baselines.mprnet_restorer:MPRNetRestorer",
    "alternation": "fdem.baselines.alternation:AlternationRestorer",
}


@dataclass
class Restoration:
    """``image (B, C, H, W)`` in ``[0, 1]``; ``kernel (B, 1, k, k)`` for methods that estimate one;
    ``particles (B, n, C, H, W)`` for posterior samplers (their mean is ``image``); ``seconds``:
    wall-clock time of the method itself, device-synchronised (no loading, no metrics)."""

    image: Tensor
    kernel: Tensor | None = None
    particles: Tensor | None = None
    seconds: float = float("nan")
    extras: dict = field(default_factory=dict)


class Restorer:
    """Base class: subclasses set ``blind`` and implement :meth:`_restore`.

    ``blind=False`` methods (``dps``, ``pigdm``) need the true ``kernel``; blind ones ignore it.
    ``params()`` returns the options that change results (written into every benchmark row).
    """

    blind: bool = True
    channels: int | None = None  # the channel count the method needs (None: 1 or 3)

    def __init__(self, method: str, device: torch.device | str = "cpu"):
        self.method = method
        self.device = torch.device(device)

    @classmethod
    def extra_options(cls) -> tuple[str, ...]:
        """Options taken through ``**options`` besides the named constructor arguments."""
        return ()

    @classmethod
    def is_blind(cls, method: str) -> bool:
        """Whether ``method`` estimates the kernel (known before building the restorer)."""
        return cls.blind

    def params(self) -> dict:
        return {}

    def total_steps(self) -> int | None:
        """How many times :meth:`restore` calls ``callback`` per batch (None: it does not)."""
        return None

    def restore(self, y: Tensor, sigma: float | Tensor, *, kernel: Tensor | None = None,
                seed: int | Sequence[int] = 0, callback: Callable[..., None] | None = None) -> Restoration:
        """Restore ``y (B, C, H, W)`` in ``[0, 1]`` observed at noise level ``sigma`` (``[0, 1]`` units).

        ``kernel``: the true kernel ``(B or 1, 1, k, k)`` (used by non-blind methods only); image
        ``b`` uses seed ``seed + b`` (or ``seed[b]``); ``callback`` is called after each step of an
        iterative method (progress bars).
        """
        if y.dim() != 4:
            raise InputError(f"{self.method}: y must be (B, C, H, W), got shape {tuple(y.shape)}")
        if not self.blind and kernel is None:
            raise InputError(f"method {self.method} is non-blind: it needs the true kernel")
        with timed(self.device) as clock:
            result = self._restore(y.to(self.device), sigma, kernel, seed, callback)
        result.seconds = clock.seconds
        return result

    def _restore(self, y: Tensor, sigma: float | Tensor, kernel: Tensor | None,
                 seed: int | Sequence[int], callback: Callable[..., None] | None) -> Restoration:
        raise NotImplementedError


class ConfigRestorer(Restorer):
    """A restorer whose options are ``kernel_size`` and the fields of a frozen ``config_class``
    dataclass with a ``check()`` method raising :class:`InputError` (lists become tuples, as YAML
    gives them); ``params()`` reports them all."""

    config_class: type

    def __init__(self, method: str, device: torch.device | str = "cpu", kernel_size: int = 33, **options):
        from fdem.kernel_ops import check_kernel_size

        super().__init__(method, device)
        check_kernel_size(kernel_size, method)
        unknown = sorted(set(options) - set(self.extra_options()))
        if unknown:
            raise InputError(f"{method}: unknown option(s) {unknown}; valid: {', '.join(self.extra_options())}")
        self.kernel_size = kernel_size
        self.cfg = self.config_class(**{k: tuple(v) if isinstance(v, list) else v for k, v in options.items()})
        self.cfg.check()

    @classmethod
    def extra_options(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls.config_class))

    def params(self) -> dict:
        return {"kernel_size": self.kernel_size, **{k: v for k, v in asdict(self.cfg).items() if v is not None}}


class _Clock:
    seconds: float = float("nan")


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


@contextmanager
def timed(device: torch.device) -> Iterator[_Clock]:
    """Wall-clock seconds of the block, synchronised with ``device`` before and after."""
    clock = _Clock()
    synchronize(device)
    start = time.perf_counter()
    yield clock
    synchronize(device)
    clock.seconds = time.perf_counter() - start


def method_names() -> list[str]:
    return list(METHOD_CLASSES)


def restorer_class(method: str) -> type[Restorer]:
    if method not in METHOD_CLASSES:
        raise InputError(f"unknown method {method!r}: choose one of {', '.join(METHOD_CLASSES)}")
    module, _, name = METHOD_CLASSES[method].partition(":")
    return getattr(importlib.import_module(module), name)


def check_options(method: str, options: dict) -> None:
    """Raise an :class:`InputError` naming the valid options if ``options`` has one ``method`` does not take."""
    cls = restorer_class(method)
    named = inspect.signature(cls.__init__).parameters.values()
    valid = [p.name for p in named if p.name not in ("self", "method", "device")
             and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)] + list(cls.extra_options())
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise InputError(f"method {method}: unknown option(s) {unknown}; valid: {', '.join(valid) or 'none'}")


def build_restorer(method: str, device: torch.device | str = "cpu", **options) -> Restorer:
    """The restorer of ``method`` with ``options`` (unknown options are an error naming the valid ones)."""
    check_options(method, options)
    return restorer_class(method)(method, device, **options)
