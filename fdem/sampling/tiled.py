"""The score network on overlapping tiles of an image larger than its native size (issue 16).

:class:`TiledNet` cuts ``x (B, C, H, W)`` into ``tile × tile`` windows that cover the image (the
last window of a row or column flush with the border), runs the wrapped network on them in batches
of at most ``max_batch`` windows and blends the outputs (ε and any variance channels) with smooth
separable weights that sum to 1 at every pixel. For a fixed ``x_t``, ``x̂0`` is affine in ε, so
this *is* the blended denoiser; autograd through it is its exact vector–Jacobian product, and the
sampler loop (:mod:`fdem.sampling.loop`) runs unchanged: guidance, M-step and FFTs stay at full
size, with one kernel for the whole image.

When a gradient is needed and the activations of all windows would exceed :data:`CHECKPOINT_BYTES`,
each batch of windows is checkpointed (its activations are recomputed in the backward pass), so the
network's working memory is that of one batch, not of the image; below that budget they are kept
(a second forward costs half as much time again).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from fdem.errors import InputError
from fdem.memory import ATTENTION_BYTES, FEATURE_BYTES, unet_features
from fdem.padding import network_multiple
from fdem.windows import window_starts


def ramp(tile: int, overlap: int, rise: bool, fall: bool) -> Tensor:
    """1-D weight of one window: a raised-cosine rise over the first ``overlap`` samples (if ``rise``),
    flat 1, and the mirrored fall over the last ``overlap`` (if ``fall``); strictly positive."""
    weight = torch.ones(tile, dtype=torch.float64)
    if overlap > 0:
        edge = torch.sin(0.5 * math.pi * (torch.arange(overlap, dtype=torch.float64) + 0.5) / overlap) ** 2
        if rise:
            weight[:overlap] = edge
        if fall:
            weight[tile - overlap:] = edge.flip(0)
    return weight


def axis_weights(size: int, tile: int, overlap: int) -> tuple[list[int], Tensor]:
    """``(starts, weights (n, tile))`` along one axis: each window's ramp (no ramp at the image's
    border) divided by the sum of the ramps covering each pixel, so they sum to 1 everywhere."""
    starts = window_starts(size, tile, overlap)
    ramps = [ramp(tile, overlap, s > 0, s + tile < size) for s in starts]
    total = torch.zeros(size, dtype=torch.float64)
    for s, r in zip(starts, ramps):
        total[s:s + tile] += r
    return starts, torch.stack([r / total[s:s + tile] for s, r in zip(starts, ramps)])


def check_tiling(net: nn.Module, height: int, width: int, tile: int, overlap: int, max_batch: int) -> None:
    """Raise an :class:`InputError` for a tiling that cannot run on a ``height × width`` image."""
    multiple = network_multiple(net)
    if max_batch < 1:
        raise InputError(f"--max-batch must be an integer >= 1, got {max_batch}")
    if tile < 1 or tile % multiple:
        raise InputError(f"--tile must be a positive multiple of {multiple} (the network's), got {tile}")
    if tile > min(height, width):
        raise InputError(f"--tile {tile} is larger than the image ({height}x{width} after padding)")
    if not 0 <= overlap < tile:
        raise InputError(f"--overlap must be in [0, tile) = [0, {tile}), got {overlap}")


class TiledNet(nn.Module):
    """``net`` applied window by window and blended (module docstring); ``cfg`` is the wrapped net's."""

    def __init__(self, net: nn.Module, tile: int, overlap: int, max_batch: int = 16, checkpointed: bool = True):
        super().__init__()
        check_tiling(net, tile, tile, tile, overlap, max_batch)
        self.net, self.tile, self.overlap, self.max_batch = net, tile, overlap, max_batch
        self.checkpointed = checkpointed

    @property
    def cfg(self):
        return getattr(self.net, "cfg", None)

    def windows(self, height: int, width: int) -> list[tuple[int, int, Tensor]]:
        """``(top, left, weight (tile, tile))`` of every window of a ``height × width`` image."""
        check_tiling(self.net, height, width, self.tile, self.overlap, self.max_batch)
        rows, row_w = axis_weights(height, self.tile, self.overlap)
        cols, col_w = axis_weights(width, self.tile, self.overlap)
        return [(r, c, torch.outer(row_w[i], col_w[j])) for i, r in enumerate(rows) for j, c in enumerate(cols)]

    def count(self, height: int, width: int) -> int:
        """Number of windows per image of ``height × width``."""
        return len(window_starts(height, self.tile, self.overlap)) * len(window_starts(width, self.tile, self.overlap))

    def _run(self, tiles: Tensor, t: Tensor) -> Tensor:
        """The network on one batch of windows, checkpointed (if so planned) when a gradient will flow back."""
        if self.checkpointed and torch.is_grad_enabled() and tiles.requires_grad:
            return checkpoint(self.net, tiles, t, use_reentrant=False)
        return self.net(tiles, t)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        batch, _, height, width = x.shape
        size = self.tile
        windows = self.windows(height, width)
        tiles = torch.cat([x[:, :, r:r + size, c:c + size] for r, c, _ in windows])  # window-major
        times = t.reshape(-1).expand(batch).repeat(len(windows))
        outs = torch.cat([self._run(tiles[i:i + self.max_batch], times[i:i + self.max_batch])
                          for i in range(0, tiles.shape[0], self.max_batch)])
        canvas = x.new_zeros(batch, outs.shape[1], height, width)
        for k, (r, c, weight) in enumerate(windows):
            canvas[:, :, r:r + size, c:c + size] += weight.to(x) * outs[k * batch:(k + 1) * batch]
        return canvas


MIN_TILE = 128  # default tile side at least: the small priors run well at 2× their native 64 (the
# demo samples 128² with them); larger tiles cost more per pixel on a CPU (attention grows with the
# square of the tokens: on the 1024×768 photo of README the plan gave 130 s per step with 256² tiles on one
# loaded thread and 25 s with 128² tiles on two)
CHECKPOINT_BYTES = 4 * 2**30  # a tiled guided step keeps every window's activations up to this, recomputes them beyond


def attention_dominates(net: nn.Module, height: int, width: int) -> bool:
    """Whether the UNet's attention matrices on the whole ``height × width`` canvas would hold more memory
    than its feature maps (:func:`fdem.memory.unet_features`): where their cost, quadratic in the
    tokens, takes over, and tiles become cheaper than one call (docs/design.md §9: on a CPU 256²
    runs faster untiled, 288×368 tiled)."""
    cfg = getattr(net, "cfg", None)
    if cfg is None:
        return False
    features, attention = unet_features(cfg, height, width)
    return ATTENTION_BYTES * attention > FEATURE_BYTES * features


def window_bytes(net: nn.Module, tile: int) -> float:
    """Activation bytes of one ``tile × tile`` window kept for the backward (the memory model's terms)."""
    cfg = getattr(net, "cfg", None)
    if cfg is None:
        return math.inf
    features, attention = unet_features(cfg, tile, tile)
    return FEATURE_BYTES * features + ATTENTION_BYTES * attention


class Tiling:
    """A tiling plan. ``tile`` None means the default: the network's native size, at least
    :data:`MIN_TILE`, shrunk to the image's short side; ``overlap`` None a quarter of the tile.
    By default :meth:`wrap` tiles a network only where its attention would dominate the untiled
    canvas's memory (:func:`attention_dominates`); a ``tile`` given explicitly is always used and must
    fit in the image."""

    def __init__(self, tile: int | None = None, overlap: int | None = None, max_batch: int = 2):
        self.tile, self.overlap, self.max_batch = tile, overlap, max_batch

    def native(self, net: nn.Module) -> int:
        """The default tile side before shrinking: the network's native size, at least :data:`MIN_TILE`."""
        cfg = getattr(net, "cfg", None)
        return max(cfg.image_size if cfg is not None else 64, MIN_TILE)

    def resolve(self, net: nn.Module, height: int, width: int) -> tuple[int, int, int]:
        """``(tile, overlap, max_batch)`` for a ``height × width`` image, defaults filled in from ``net``'s config."""
        tile = self.tile
        if tile is None:
            multiple = network_multiple(net)
            tile = max(multiple, min(self.native(net), min(height, width) // multiple * multiple))
        return tile, tile // 4 if self.overlap is None else self.overlap, self.max_batch

    def wrap(self, net: nn.Module, height: int, width: int, samples: int = 1) -> nn.Module:
        """``net`` tiled for a ``height × width`` image of ``samples`` chains (checked), or ``net`` itself
        when no tile is given and attention does not dominate the whole canvas. The windows are
        checkpointed when all their activations would exceed :data:`CHECKPOINT_BYTES`."""
        if self.tile is None and not attention_dominates(net, height, width):
            return net
        tile, overlap, max_batch = self.resolve(net, height, width)
        check_tiling(net, height, width, tile, overlap, max_batch)
        windows = len(window_starts(height, tile, overlap)) * len(window_starts(width, tile, overlap))
        return TiledNet(net, tile, overlap, max_batch, windows * samples * window_bytes(net, tile) > CHECKPOINT_BYTES)
