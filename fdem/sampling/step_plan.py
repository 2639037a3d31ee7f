"""What a diffusion restoration will do and about how long it takes, said before it starts.

A user pointing ``fdem deblur`` at a large photo wants to know the work (canvas size, network
windows per step, steps) and the time before waiting for it. The time is extrapolated from one
timed network call (forward and input gradient) on one batch of windows, after an untimed warm-up
call (the first call of a process pays one-off allocation costs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from fdem.devices import synchronize


@dataclass(frozen=True)
class StepPlan:
    """One image's work under ``preset``: ``canvas`` (H, W) after padding, ``windows`` per step (1:
    untiled) run in ``batches`` network calls, ``steps`` network steps, ``seconds_per_step`` (None: not
    timed) for all its ``chains`` (particles × restarts, run side by side); ``kernel_init`` the blind
    kernel's start when it is not the Dirac (the alternation's costs a little time before the steps,
    not counted)."""

    preset: str
    size: tuple[int, int]
    canvas: tuple[int, int]
    windows: int
    batches: int
    steps: int
    seconds_per_step: float | None = None
    chains: int = 1
    kernel_init: str | None = None

    def line(self, name: str) -> str:
        """The plan in one printed line."""
        (h, w), (ch, cw) = self.size, self.canvas
        work = f"{self.windows} tiles per step in {self.batches} batch(es)" if self.windows > 1 else "1 network call per step"
        text = f"plan: {name} {h}x{w} (canvas {ch}x{cw}, preset {self.preset}), {work}, {self.steps} steps"
        if self.chains > 1:
            text += f" of {self.chains} chains side by side"
        if self.seconds_per_step is not None:
            total = self.seconds_per_step * self.steps
            text += f", about {self.seconds_per_step:.2g} s per step, {total / 60:.1f} min in all (from a warm-up call)"
        if self.kernel_init is not None:
            text += f"; kernel started from the {self.kernel_init} (before the steps, not in the time)"
        return text


def time_call(net: nn.Module, batch: int, channels: int, height: int, width: int, device: torch.device) -> tuple[float, float]:
    """``(forward, backward)`` seconds of one ``net`` call on a random ``(batch, channels, height, width)``
    input at the middle timestep and of its input gradient; a first untimed call warms up."""
    x = torch.randn(batch, channels, height, width, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    seconds = (0.0, 0.0)
    for _ in range(2):
        with torch.enable_grad():
            x_in = x.clone().requires_grad_(True)
            start = time.perf_counter()
            out = net(x_in, t)
            synchronize(device)
            middle = time.perf_counter()
            torch.autograd.grad(out.sum(), x_in)
            synchronize(device)
            seconds = (middle - start, time.perf_counter() - middle)
    return seconds


def plan_restoration(restorer, height: int, width: int, timed: bool = True) -> StepPlan:
    """The :class:`StepPlan` of a diffusion ``restorer`` (:class:`~fdem.sampling.diffusion_restorer.DiffusionRestorer`)
    on a ``height × width`` image; ``timed`` adds the extrapolated time of a guided step."""
    canvas = restorer.canvas(height, width)
    net = restorer.network_for(*canvas)
    windows = net.count(*canvas) if hasattr(net, "count") else 1
    batch = min(getattr(net, "max_batch", 1), windows)
    batches = -(-windows // batch)
    spec = restorer.spec
    steps, chains = restorer.total_steps(), restorer.chains
    kernel_init = spec.em.kernel_init if spec.blind and spec.em.kernel_init != "dirac" else None
    if not timed:
        return StepPlan(spec.preset, (height, width), canvas, windows, batches, steps, chains=chains, kernel_init=kernel_init)
    channels = restorer.channels or 3
    if windows > 1:  # tiled: each batch of windows is run again in the backward (checkpoint), once per chain
        forward, backward = time_call(restorer.net, batch, channels, net.tile, net.tile, restorer.device)
        seconds = chains * batches * (2 * forward + backward)
    else:  # the chains are one batch
        seconds = sum(time_call(restorer.net, chains, channels, *canvas, restorer.device))
    return StepPlan(spec.preset, (height, width), canvas, windows, batches, steps, seconds, chains, kernel_init)
