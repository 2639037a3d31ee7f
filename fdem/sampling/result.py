"""What a sampler returns, and the optional trace of its progress (saved as a GIF or a PNG strip)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor

from fdem.errors import InputError
from fdem.io_utils import atomic_path

TRACE_FORMATS = ("gif", "png")


@dataclass
class Trace:
    """Snapshots every ``every`` steps (and the last one): ``x0 (T, B, C, H, W)``, the particle mean
    of ``u = (x̂0 + 1)/2``, and ``kernel (T, B, 1, k, k)`` (None for a non-blind method)."""

    steps: list[int]
    x0: Tensor
    kernel: Tensor | None


@dataclass
class SamplingResult:
    """``image (B, C, H, W)`` = mean of ``particles (B, n, C, H, W)``, both in ``[0, 1]``;
    ``kernel (B, 1, k, k)`` the estimated kernel (None for non-blind methods); wall-clock
    ``seconds`` of the whole call; ``trace`` when requested."""

    method: str
    image: Tensor
    particles: Tensor
    kernel: Tensor | None
    seconds: float
    trace: Trace | None = None


class TraceRecorder:
    """A loop callback keeping (on the device, without host synchronisation) every ``every``-th
    step's particle-mean ``u`` and kernel; :meth:`trace` adds the final step if it was skipped."""

    def __init__(self, every: int):
        if every < 1:
            raise InputError(f"trace interval must be >= 1, got {every}")
        self.every = every
        self.count = 0
        self.steps: list[int] = []
        self.frames: list[tuple[Tensor, Tensor | None]] = []
        self.last: tuple[Tensor, Tensor | None] | None = None

    def __call__(self, u: Tensor, kernel: Tensor | None) -> None:
        self.last = (u.mean(dim=1), kernel)
        if self.count % self.every == 0:
            self.steps.append(self.count)
            self.frames.append(self.last)
        self.count += 1

    def trace(self, blind: bool) -> Trace:
        steps, frames = list(self.steps), list(self.frames)
        if self.count and steps[-1] != self.count - 1:
            steps.append(self.count - 1)
            frames.append(self.last)
        kernels = torch.stack([k for _, k in frames]) if blind else None
        return Trace(steps, torch.stack([u for u, _ in frames]), kernels)


def kernel_view(kernel: Tensor, height: int) -> Tensor:
    """``(1, s, s)`` picture of a ``(1, k, k)`` kernel: divided by its maximum, enlarged by an integer
    factor (nearest neighbour) to at most ``height`` pixels (never below the kernel's own size)."""
    scale = max(1, height // kernel.shape[-1])
    view = kernel / kernel.amax().clamp_min(1e-12)
    return F.interpolate(view[None], scale_factor=scale, mode="nearest")[0]


def _frame(image: Tensor, kernel: Tensor | None) -> np.ndarray:
    """One ``(H, W', 3)`` uint8 frame: the image, and the kernel picture beside it (top-aligned)."""
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image
    if kernel is not None:
        view = kernel_view(kernel, image.shape[-2]).expand(3, -1, -1)
        canvas = image.new_zeros(3, max(image.shape[-2], view.shape[-2]), image.shape[-1] + view.shape[-1])
        canvas[:, : image.shape[-2], : image.shape[-1]] = image
        canvas[:, : view.shape[-2], image.shape[-1] :] = view
        image = canvas
    return (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def save_trace(trace: Trace, path: str | Path, index: int = 0, columns: int = 10) -> Path:
    """Save image ``index`` of ``trace`` as an animated GIF or a PNG grid of ``columns`` frames per
    row (chosen by the suffix of ``path``); each frame shows x̂0 and, beside it, the kernel."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in TRACE_FORMATS:
        raise InputError(f"trace file {path} must end in one of: {', '.join('.' + f for f in TRACE_FORMATS)}")
    x0 = trace.x0[:, index].detach().float().cpu()
    kernels = None if trace.kernel is None else trace.kernel[:, index].detach().float().cpu()
    frames = [_frame(x0[t], None if kernels is None else kernels[t]) for t in range(len(trace.steps))]
    with atomic_path(path) as tmp:
        if fmt == "gif":
            pictures = [Image.fromarray(f) for f in frames]
            pictures[0].save(tmp, format="GIF", save_all=True, append_images=pictures[1:], duration=80, loop=0)
        else:
            Image.fromarray(_grid(frames, columns)).save(tmp, format="PNG")
    return path


def _grid(frames: list[np.ndarray], columns: int) -> np.ndarray:
    """Frames (all the same size) tiled row by row, ``columns`` per row, on black."""
    h, w, _ = frames[0].shape
    rows = -(-len(frames) // columns)
    cols = min(columns, len(frames))
    grid = np.zeros((rows * h, cols * w, 3), dtype=np.uint8)
    for t, frame in enumerate(frames):
        r, c = divmod(t, columns)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = frame
    return grid
