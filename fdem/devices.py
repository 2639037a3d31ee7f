"""Device helpers of the library: which device to run on, and device-synchronised timing.

Every front end (``fdem deblur --device``, ``fdem speed --device``, a speed grid's ``device:``)
resolves its device with :func:`resolve_device`, so an unknown or absent device is refused the
same way everywhere.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

from fdem.errors import InputError


def default_device() -> torch.device:
    """The machine's accelerator if it has one, else the CPU."""
    accelerator = torch.accelerator.current_accelerator() if torch.accelerator.is_available() else None
    return accelerator or torch.device("cpu")


def resolve_device(device: str | torch.device | None, flag: str = "--device") -> torch.device:
    """``device`` checked to exist here (``None`` or ``"auto"``: :func:`default_device`).

    An unknown name, a device type this machine has no accelerator of, or an index it lacks is an
    :class:`InputError` naming ``flag``.
    """
    if device is None or str(device) == "auto":
        return default_device()
    try:
        device = torch.device(device)
    except RuntimeError as err:
        raise InputError(f"{flag}: unknown device {str(device)!r}") from err
    if device.type != "cpu":
        accelerator = default_device()
        if accelerator.type != device.type:
            raise InputError(f"{flag}: device {device} is not available on this machine")
    try:
        torch.empty(0, device=device)
    except (RuntimeError, AssertionError) as err:  # e.g. an index past the machine's device count
        raise InputError(f"{flag}: device {device} is not available: {str(err).splitlines()[0]}") from err
    return device


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type != "cpu":
        torch.accelerator.synchronize(device)


class Clock:
    """What :func:`timed` yields; ``seconds`` is set when the block ends."""

    seconds: float = float("nan")


@contextmanager
def timed(device: torch.device) -> Iterator[Clock]:
    """Wall-clock seconds of the block, synchronised with ``device`` before and after."""
    clock = Clock()
    synchronize(device)
    start = time.perf_counter()
    yield clock
    synchronize(device)
    clock.seconds = time.perf_counter() - start
