"""The interface every restoration method implements: :class:`Restorer` (built once, then called
on batches) and its result :class:`Restoration` (docs/design.md §3).

The methods' modules import this module for the base classes, and the registry
(:mod:`fdem.restorers`) imports the methods by name, so this module must not import the registry.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Callable, Sequence

import torch
from torch import Tensor

from fdem.devices import timed
from fdem.errors import InputError
from fdem.method_table import lookup


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
    """Base class: subclasses implement :meth:`_restore`; ``blind`` comes from the method table.

    Non-blind methods (``dps``, ``pigdm``) need the true ``kernel``; blind ones ignore it.
    ``params()`` returns the options that change results (written into every benchmark row).
    """

    channels: int | None = None  # the channel count the method needs (None: 1 or 3)

    def __init__(self, method: str, device: torch.device | str = "cpu"):
        self.method = method
        self.blind = lookup(method).blind
        self.device = torch.device(device)

    def params(self) -> dict:
        return {}

    def total_steps(self, size: tuple[int, int] | None = None) -> int | None:
        """How many times :meth:`restore` calls ``callback`` per batch of images of ``size`` (None: it does not)."""
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
        """The config dataclass's fields, taken through ``**options``."""
        return tuple(f.name for f in fields(cls.config_class))

    def params(self) -> dict:
        return {"kernel_size": self.kernel_size, **{k: v for k, v in asdict(self.cfg).items() if v is not None}}
