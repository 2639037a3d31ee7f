"""What a diffusion restoration will do and about how long it takes, said before it starts.

A user pointing ``fdem deblur`` at a large photo wants to know the work (canvas size, network
windows per step, steps) and the time before waiting for it. The time is extrapolated from the
fastest of two timed network calls (forward and input gradient) on one batch of windows, after an
untimed warm-up call (the first call of a process pays one-off allocation costs).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from torch import nn

from fdem.devices import synchronize


@dataclass(frozen=True)
class Stage:
    """One sampling run of a plan: ``canvas`` (H, W) after padding, ``windows`` per step (1: untiled)
    in ``batches`` network calls, ``steps`` network steps of ``chains`` samples side by side,
    ``seconds_per_step`` (None: not timed); ``what`` it restores (None: the image)."""

    canvas: tuple[int, int]
    windows: int
    batches: int
    steps: int
    chains: int = 1
    seconds_per_step: float | None = None
    what: str | None = None

    def text(self) -> str:
        (ch, cw) = self.canvas
        work = f"{self.windows} tiles per step in {self.batches} batch(es)" if self.windows > 1 else "1 network call per step"
        text = f"canvas {ch}x{cw}, {work}, {self.steps} steps"
        if self.chains > 1:
            text += f" of {self.chains} chains side by side"
        if self.seconds_per_step is not None:
            text += f", about {self.seconds_per_step:.2g} s per step"
        return text


@dataclass(frozen=True)
class StepPlan:
    """One image's work under ``preset``: its ``stages`` (the blind run on a kernel window and the
    whole-image pass, or the one run); ``kernel_init`` the blind kernel's start when it is not the
    Dirac (the alternation's costs a little time before the steps, not counted)."""

    preset: str
    size: tuple[int, int]
    stages: tuple[Stage, ...]
    kernel_init: str | None = None

    @property
    def seconds(self) -> float | None:
        """The extrapolated time of all steps (None: not timed)."""
        if any(stage.seconds_per_step is None for stage in self.stages):
            return None
        return sum(stage.seconds_per_step * stage.steps for stage in self.stages)

    def line(self, name: str) -> str:
        """The plan in one printed line."""
        h, w = self.size
        parts = [(f"{stage.what}: " if stage.what else "") + stage.text() for stage in self.stages]
        text = f"plan: {name} {h}x{w} (preset {self.preset}), " + "; then ".join(parts)
        if self.seconds is not None:
            text += f"; {self.seconds / 60:.1f} min in all (from warm-up calls)"
        if self.kernel_init is not None:
            text += f"; kernel started from the {self.kernel_init} (before the steps, not in the time)"
        return text


TIMED_CALLS = 2  # after the warm-up; the fastest is kept (a busy machine's hiccups are not the step's cost)


def time_call(net: nn.Module, batch: int, channels: int, height: int, width: int, device: torch.device) -> tuple[float, float]:
    """``(forward, backward)`` seconds of one ``net`` call on a random ``(batch, channels, height, width)``
    input at the middle timestep and of its input gradient, the fastest of :data:`TIMED_CALLS` after an
    untimed warm-up call."""
    x = torch.randn(batch, channels, height, width, device=device)
    t = torch.full((batch,), 500, device=device, dtype=torch.long)
    timings = []
    for _ in range(1 + TIMED_CALLS):
        with torch.enable_grad():
            x_in = x.clone().requires_grad_(True)
            start = time.perf_counter()
            out = net(x_in, t)
            synchronize(device)
            middle = time.perf_counter()
            torch.autograd.grad(out.sum(), x_in)
            synchronize(device)
            timings.append((middle - start, time.perf_counter() - middle))
    return min(timings[1:], key=sum)


def plan_restoration(restorer, height: int, width: int, timed: bool = True) -> StepPlan:
    """The :class:`StepPlan` of a diffusion ``restorer`` (:class:`~fdem.sampling.diffusion_restorer.DiffusionRestorer`)
    on a ``height × width`` image; ``timed`` adds the extrapolated time of a guided step of each stage."""
    from fdem.sampling.kernel_window import window_size

    spec = restorer.spec
    kernel_init = spec.em.kernel_init if spec.blind and spec.em.kernel_init != "dirac" else None
    if not spec.windowed(height, width):
        stages = (plan_stage(restorer, restorer.canvas(height, width), spec.network_calls(), spec.em.chains, timed),)
    else:
        h, w = window_size(spec.em.kernel_window, height, width)
        whole = spec.whole_image_pass()
        stages = (plan_stage(restorer, restorer.canvas(h, w), spec.network_calls(), spec.em.chains, timed,
                             f"the kernel on a {h}x{w} window"),
                  plan_stage(restorer, restorer.canvas(height, width), whole.network_calls(), whole.em.chains, timed,
                             "the whole image with it"))
    return StepPlan(spec.preset, (height, width), stages, kernel_init)


def plan_stage(restorer, canvas: tuple[int, int], steps: int, chains: int, timed: bool, what: str | None = None) -> Stage:
    """One :class:`Stage` on ``canvas``: its tiling, and with ``timed`` the time of a guided step from
    one timed call (a tiled step runs each batch of windows once per chain, twice when checkpointed)."""
    net = restorer.network_for(*canvas, chains)
    windows = net.count(*canvas) if hasattr(net, "count") else 1
    batch = min(getattr(net, "max_batch", 1), windows)
    batches = -(-windows // batch)
    seconds = None
    if timed:
        channels = restorer.channels or 3
        if windows > 1:
            forward, backward = time_call(restorer.net, batch, channels, net.tile, net.tile, restorer.device)
            seconds = chains * batches * ((2 if net.checkpointed else 1) * forward + backward)
        else:  # the chains are one batch
            seconds = sum(time_call(restorer.net, chains, channels, *canvas, restorer.device))
    return Stage(canvas, windows, batches, steps, chains, seconds, what)
