"""Peak-memory estimate of a restoration plan, checked before the first network call.

A plan is a method, a batch (``particles`` samples of one image) and the image size after padding.
Its peak is the network's parameters plus working memory, in float32 bytes:

* guided diffusion samplers (``dps``, ``pigdm``, ``fastem-*``, ``diffem-*``, ``blind-dps``) keep the
  UNet's activations for one vector-Jacobian product per step:
  ``FEATURE_BYTES · batch · F + ATTENTION_BYTES · batch · A + FFT_BYTES · batch · C · H · W``, where
  ``F = Σ_levels (2·num_res_blocks + 2) · width_l · H·W / 4^l`` (feature elements of the
  encoder and decoder blocks) and ``A = Σ_attention layers heads · L²`` with ``L`` the layer's token
  count (SDPA's math backend materialises the attention matrix and keeps it for the backward);
* the classical methods (``l0-anger``, ``alternation``, ``selfdeblur``, ``mprnet``) are FFT or
  convolution sized: ``PIXEL_BYTES[method] · C · H · W``.

Calibration (CPU, one thread; peak RSS over the RSS before the call, read from ``VmHWM`` after
resetting it through ``/proc/self/clear_refs``; the shipped ``small64`` prior, fastem-pigdm, 2
steps): 64², 128², 256² with one particle, 128² with 4 and 256² with 2 particles measured 70, 231,
1302, 825, 2296 MB; the formula gives 106, 261, 1291, 850, 2518 MB (a least-squares fit, rounded;
the fixed overhead dominates the smallest). The classical constants are the slopes between 128²
and 256² runs, rounded up: l0-anger 40 MB and alternation 22 MB at 256², mprnet 161 MB,
selfdeblur 880 MB (its fixed ~300 MB is not modelled). The estimate is meant for refusing plans
that cannot fit: a plan near the limit may be off by a few tens of per cent either way.

A tiled plan (``tile > 0``, :mod:`fdem.sampling.tiled`) that checkpoints each batch of windows holds
the UNet's share of ``min(max_batch, windows · batch)`` windows of ``tile × tile`` (one that does not,
under :data:`~fdem.sampling.tiled.CHECKPOINT_BYTES`, that of all ``windows · batch``); the
full-size buffers (sampler state, FFTs, the windows' inputs and blended outputs) stay:
``FFT_BYTES · batch · C · H · W + WINDOW_BYTES · windows · batch · C · tile²``.

``fdem deblur``'s default ``border="impute"`` keeps one more full-size float32 copy of the
observation (its imputed margin, :meth:`fdem.problem.BlurProblem.impute`; the refill's
temporaries live outside the network call, whose activations make the peak): 4 bytes per
``C·H·W`` per image, a quarter of the ``FFT_BYTES`` term, inside the tolerance above and not
modelled separately.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from fdem.errors import InputError
from fdem.windows import window_starts

GIB = 2 ** 30
FEATURE_BYTES = 48.0  # per feature element of the UNet, guided sampling (activations kept for the VJP)
ATTENTION_BYTES = 6.0  # per attention-matrix entry (kept for the backward)
FFT_BYTES = 16.0  # per image sample: the M-step's and guidance's FFT buffers and the sampler's state
OVERHEAD_BYTES = 64 * 2 ** 20  # allocator and thread-pool slack of any run
WINDOW_BYTES = 40.0  # per window sample of a tiled plan: its input, ε/variance output, weighted copy, gradients
MAX_PIXELS = 50_000_000  # default --max-pixels: larger inputs are refused as absurd before any estimate
PIXEL_BYTES = {"l0-anger": 200.0, "alternation": 200.0, "mprnet": 800.0, "selfdeblur": 4000.0}
SAFETY = 0.8  # share of the available memory a plan may use by default


@dataclass(frozen=True)
class Plan:
    """What one restoration call will hold: ``height × width`` after padding, ``channels`` of the
    image, ``batch`` samples, ``params`` network parameters (all networks), ``unet`` the ADM config
    of the score network (None for a method without one); ``tile`` (0: untiled), ``overlap`` and
    ``max_batch`` a tiling of the UNet, ``checkpointed`` whether its windows' activations are recomputed,
    ``cells`` the kernel field's cells (1: one kernel)."""

    method: str
    height: int
    width: int
    channels: int = 3
    batch: int = 1
    params: int = 0
    unet: object = None
    tile: int = 0
    overlap: int = 0
    max_batch: int = 1
    checkpointed: bool = True
    cells: int = 1

    def windows(self) -> int:
        """Windows per image of a tiled plan (0 when untiled)."""
        if not self.tile:
            return 0
        return len(window_starts(self.height, self.tile, self.overlap)) * len(window_starts(self.width, self.tile, self.overlap))


def unet_features(cfg, height: int, width: int) -> tuple[float, float]:
    """``(F, A)`` of the module docstring for an ADM UNet ``cfg`` on a ``height × width`` input."""
    features = attention = 0.0
    last = len(cfg.channel_mult) - 1
    for level, mult in enumerate(cfg.channel_mult):
        pixels = height * width / 4 ** level
        width_l = mult * cfg.model_channels
        features += (2 * cfg.num_res_blocks + 2) * width_l * pixels
        resolution = cfg.image_size // 2 ** level
        layers = (2 * cfg.num_res_blocks + 1) * (resolution in cfg.attention_resolutions) + (level == last)
        attention += layers * cfg.heads_for(width_l) * pixels ** 2
    return features, attention


def estimate_bytes(plan: Plan) -> float:
    """Estimated peak bytes of ``plan`` (module docstring)."""
    pixels = plan.height * plan.width
    working = OVERHEAD_BYTES + 4.0 * plan.params
    if plan.unet is None:
        return working + PIXEL_BYTES.get(plan.method, FFT_BYTES) * plan.channels * pixels * plan.batch
    samples = FFT_BYTES * plan.channels * pixels * plan.cells  # a kernel field's M-step windows every cell's data
    if plan.tile:
        windows = plan.windows() * plan.batch
        features, attention = unet_features(plan.unet, plan.tile, plan.tile)
        held = min(plan.max_batch, windows) if plan.checkpointed else windows
        network = held * (FEATURE_BYTES * features + ATTENTION_BYTES * attention)
        return working + network + plan.batch * samples + WINDOW_BYTES * windows * plan.channels * plan.tile ** 2
    features, attention = unet_features(plan.unet, plan.height, plan.width)
    return working + plan.batch * (FEATURE_BYTES * features + ATTENTION_BYTES * attention + samples)


def available_bytes(device) -> float:
    """Free memory where ``device`` computes: the accelerator's free memory, else the machine's
    available memory (``psutil`` if installed, else ``/proc/meminfo``; ``inf`` if neither reads)."""
    import torch

    if device.type != "cpu":
        return float(torch.accelerator.get_memory_info(device)[0])  # (free, total) bytes
    try:
        import psutil

        return float(psutil.virtual_memory().available)
    except ImportError:
        pass
    try:
        with open("/proc/meminfo") as f:
            fields = dict(line.split(":", 1) for line in f)
        return float(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return math.inf


def memory_limit(device, max_memory_gb: float | None = None) -> float:
    """The byte limit of a plan: ``max_memory_gb`` if given, else :data:`SAFETY` × the available memory."""
    return max_memory_gb * GIB if max_memory_gb is not None else SAFETY * available_bytes(device)


def fitting_side(plan: Plan, limit: float) -> int:
    """The largest square side (a multiple of 32) whose plan, otherwise the same, fits ``limit`` (0: none)."""
    side = 0
    for candidate in range(32, 1 << 16, 32):
        trial = replace(plan, height=candidate, width=candidate)
        if estimate_bytes(trial) > limit:
            break
        side = candidate
    return side


def check_plan(plan: Plan, limit: float, what: str = "the image") -> float:
    """Return the estimate of ``plan``; raise an :class:`InputError` naming the size, the estimate,
    the limit and what would fit when it exceeds ``limit``."""
    need = estimate_bytes(plan)
    if need <= limit:
        return need
    side = fitting_side(plan, limit)
    fits = f"an image of at most about {side}x{side} would fit" if side else "no image size fits this method"
    batch = " with fewer --particles or --restarts," if plan.batch > 1 else ""
    raise InputError(
        f"{what} ({plan.height}x{plan.width} after padding) needs about {need / GIB:.1f} GB with {plan.method}, "
        f"over the limit of {limit / GIB:.1f} GB (--max-memory): {fits}; use a smaller image,{batch} or a "
        "classical method (l0-anger, alternation)"
    )


def check_pixels(height: int, width: int, max_pixels: int, what: str = "the image") -> None:
    """Refuse an input of more than ``max_pixels`` pixels (``--max-pixels``) in words."""
    if height * width > max_pixels:
        raise InputError(f"{what} has {height}x{width} = {height * width:,} pixels, more than --max-pixels "
                         f"{max_pixels:,}: downscale or crop it, or raise --max-pixels")


def restorer_plan(restorer, height: int, width: int, channels: int = 3) -> Plan:
    """The plan of ``restorer`` (built by :func:`fdem.restorers.build_restorer`) on one image of
    ``height × width``: its networks (every module it holds, or its ``modules()``), the UNet's padded size (its border
    too, :meth:`~fdem.sampling.diffusion_restorer.DiffusionRestorer.canvas`), its particles and tiling."""
    from torch import nn

    from fdem.method_table import lookup
    from fdem.padding import network_multiple

    held = restorer.modules() if hasattr(restorer, "modules") else vars(restorer).values()
    nets = [v for v in held if isinstance(v, nn.Module)]
    params = sum(p.numel() for net in nets for p in net.parameters())
    net = getattr(restorer, "net", None)
    if not lookup(restorer.method).score_prior or getattr(net, "cfg", None) is None:
        return Plan(restorer.method, height, width, channels, 1, params)
    multiple = network_multiple(net)
    canvas = getattr(restorer, "canvas", None)
    padded = canvas(height, width) if canvas else [-(-side // multiple) * multiple for side in (height, width)]
    batch = getattr(restorer, "chains", 1)
    grid = getattr(getattr(restorer, "spec", None), "canvas", None)
    cells = 1 if grid is None else grid.kernel_grid[0] * grid.kernel_grid[1]
    plan = Plan(restorer.method, *padded, channels, batch, params, net.cfg, cells=cells)
    tiled = getattr(restorer, "network_for", lambda h, w, samples=1: net)(*padded, batch)
    if tiled is net:
        return plan
    return replace(plan, tile=tiled.tile, overlap=tiled.overlap, max_batch=tiled.max_batch, checkpointed=tiled.checkpointed)
