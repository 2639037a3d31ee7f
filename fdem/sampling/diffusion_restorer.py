"""The guided diffusion methods (dps, pigdm, fastem-*, diffem-*) as restorers of :mod:`fdem.restorers`."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from fdem.errors import InputError
from fdem.padding import network_multiple
from fdem.presets import DEFAULT_PRESET, OVERRIDES, RunSpec, resolve
from fdem.priors import Prior, load_prior
from fdem.restorer_base import Restoration, Restorer
from fdem.sampling.network_speed import SpeedOptions
from fdem.sampling.tiled import Tiling
from fdem.saturation import saturation_mask


@dataclass(frozen=True)
class Networks:
    """Which networks a diffusion restorer loads: the score ``prior`` (a file, a shipped prior's name, a
    :class:`~fdem.priors.Prior` in memory, or None: the shipped natural-image prior) with its
    ``prior_config``/``prior_prefix``, and the M-step's ``kernel_denoiser`` file (None: the shipped one)."""

    prior: str | Path | Prior | None = None
    prior_config: str | None = None
    prior_prefix: str | None = None
    kernel_denoiser: str | Path | None = None


NETWORK_OPTIONS = tuple(f.name for f in fields(Networks))
SPEED_OPTIONS = ("precision", "channels_last", "compile")


class DiffusionRestorer(Restorer):
    """Posterior sampling with a score prior, as the :class:`~fdem.presets.RunSpec` ``spec`` says (a
    method under a preset, :func:`fdem.presets.resolve`), on images of any size: each is padded to a
    canvas (``spec.canvas``), run through :func:`fdem.sampling.methods.run_method` and cropped back.
    ``speed``: the UNet's precision, layout and compilation (:mod:`fdem.sampling.network_speed`; a prior
    in memory whose network is already wrapped runs as it is). ``trace_every > 0`` records a trace.
    Built from loose options (a bench config's, the CLI's) by :meth:`from_options`.
    """

    def __init__(self, spec: RunSpec, device: torch.device | str = "cpu", networks: Networks = Networks(),
                 speed: SpeedOptions = SpeedOptions(), trace_every: int = 0):
        from fdem.nets.kernel_denoiser import denoiser_for_kernel

        super().__init__(spec.method, device)
        if isinstance(trace_every, bool) or not isinstance(trace_every, int) or trace_every < 0:
            raise InputError(f"the trace interval must be an integer >= 0, got {trace_every!r}")
        loaded = load_prior(networks.prior, networks.prior_config, networks.prior_prefix, self.device)
        self.speed = speed.resolve(self.device)
        self.prior = Prior(loaded.accelerated(self.speed, self.device), loaded.schedule)
        mstep = spec.em.mstep
        if spec.blind and mstep.reg == "pnp" and mstep.lam != 0 and mstep.denoiser is None:
            denoiser = denoiser_for_kernel(mstep.kernel_size, networks.kernel_denoiser, self.device)
            spec = replace(spec, em=replace(spec.em, mstep=replace(mstep, denoiser=denoiser)))
        self.spec, self.networks, self.trace_every = spec, networks, trace_every
        self.tiling = Tiling(spec.canvas.tile, spec.canvas.overlap, spec.canvas.max_batch) if spec.canvas.tiled else None

    @classmethod
    def from_options(cls, method: str, device: torch.device | str = "cpu", preset: str = DEFAULT_PRESET,
                     **options) -> "DiffusionRestorer":
        """Build from loose options, each parsed here into its object: ``preset`` and its field overrides
        (:data:`fdem.presets.OVERRIDES`), the :class:`Networks` fields, the speed switches and ``trace_every``."""
        check_option_names(method, options)
        pick = lambda names: {k: options[k] for k in names if k in options}  # noqa: E731
        speed = SpeedOptions(options.get("precision") or "auto", options.get("channels_last"), options.get("compile"))
        return cls(resolve(method, preset, **pick(OVERRIDES)), device, Networks(**pick(NETWORK_OPTIONS)), speed,
                   options.get("trace_every", 0))

    @classmethod
    def option_names(cls) -> tuple[str, ...]:
        """Every loose option :meth:`from_options` takes."""
        return ("preset",) + OVERRIDES + NETWORK_OPTIONS + SPEED_OPTIONS + ("trace_every",)

    @property
    def net(self) -> torch.nn.Module:
        return self.prior.net

    def modules(self) -> list:
        """The networks it holds (the memory plan counts their parameters): the score UNet and the
        M-step's kernel denoiser when it is a loaded module."""
        return [self.net, self.spec.em.mstep.denoiser]

    @property
    def channels(self) -> int:
        return self.net.cfg.in_channels

    @property
    def kernel_size(self) -> int:
        return self.spec.em.mstep.kernel_size

    @property
    def chains(self) -> int:
        """Samples run side by side per image: its particles times its restarts (one batch)."""
        return self.spec.em.chains

    def params(self) -> dict:
        """The resolved options (preset first) and the network switches: what benchmark rows record."""
        networks = {k: str(v) for k, v in vars(self.networks).items() if v is not None and not isinstance(v, Prior)}
        return {**self.spec.options(), **networks, **self.net.options.row()}

    def canvas(self, height: int, width: int, kernel_size: int | None = None) -> tuple[int, int]:
        """The size the sampler works at for an image of ``height × width``: border and UNet multiple added."""
        from fdem.sampling.padded import canvas_margin

        margin = canvas_margin(self.spec.canvas.border, kernel_size or self.kernel_size)
        multiple = network_multiple(self.net)
        return tuple(-(-(side + 2 * margin) // multiple) * multiple for side in (height, width))

    def network_for(self, height: int, width: int, samples: int | None = None) -> torch.nn.Module:
        """The UNet as it runs on a ``height × width`` canvas for ``samples`` chains (default: the
        preset's): tiled if asked and larger than one tile (checked, :meth:`~fdem.sampling.tiled.Tiling.wrap`)."""
        samples = self.chains if samples is None else samples
        return self.net if self.tiling is None else self.tiling.wrap(self.net, height, width, samples)

    def total_steps(self, size: tuple[int, int] | None = None) -> int:
        """Steps (progress-bar ticks) per image; for an image of ``size`` with a kernel window, both passes."""
        return self.spec.network_calls(size)

    def _restore(self, y: Tensor, sigma, kernel: Tensor | None, seed: int | Sequence[int], callback) -> Restoration:
        if not self.spec.canvas.linear_light:
            return self._restore_frame(y, sigma, kernel, seed, callback)
        from fdem.linear_light import linear_sigma, to_linear, to_srgb

        result = self._restore_frame(to_linear(y), linear_sigma(y, sigma), kernel, seed, callback)
        particles = None if result.particles is None else to_srgb(result.particles)
        return replace(result, image=to_srgb(result.image), particles=particles)

    def _restore_frame(self, y: Tensor, sigma, kernel: Tensor | None, seed: int | Sequence[int], callback) -> Restoration:
        """The frame restored as the spec says: in one run, or the kernel on a window then the whole image."""
        from fdem.sampling.kernel_window import best_windows, crop_windows, window_size

        if not self.spec.windowed(*y.shape[-2:]):
            return self._run(self.spec, y, sigma, None if self.spec.blind else kernel, seed, callback)
        size = window_size(self.spec.em.kernel_window, *y.shape[-2:])
        corners = best_windows(y, size, saturation_mask(self.spec.canvas, y))
        found = self._run(self.spec, crop_windows(y, corners, size), sigma, self._streak_start(y), seed, callback).kernel
        whole = self._run(self.spec.whole_image_pass(), y, sigma, found, seed, callback)
        return replace(whole, kernel=found, extras={**whole.extras, "kernel_window": (corners, size)})

    def _streak_start(self, y: Tensor) -> Tensor | None:
        """With the ``streak`` kernel start, the light streaks of the *whole* frame (the window of most detail
        avoids clipped lamps) when every image has some; else None (the window's own start)."""
        from fdem.light_streaks import streak_kernel

        if self.spec.em.kernel_init != "streak":
            return None
        kernel, found = streak_kernel(y, self.kernel_size, self.spec.canvas.saturation)
        return kernel if bool(found.all()) else None

    def _run(self, spec: RunSpec, y: Tensor, sigma, kernel: Tensor | None, seed, callback) -> Restoration:
        """``spec`` on ``y``'s canvas (padded as its border says, the network tiled as planned), cropped back;
        ``kernel``: the true one for a non-blind ``spec``, a start (or None) for a blind one."""
        from fdem.sampling.methods import run_method
        from fdem.sampling.padded import cropped, padded_problem

        size = spec.em.mstep.kernel_size if kernel is None or spec.blind else kernel.shape[-1]
        if spec.sampler.sigma_floor > 0:
            sigma = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1).clamp_min(spec.sampler.sigma_floor / 255)
        canvas = spec.canvas
        problem, offset = padded_problem(y, sigma, canvas.border, size, network_multiple(self.net),
                                         saturation_mask(canvas, y), canvas.kernel_grid)
        prior = replace(self.prior, net=self.network_for(*problem.shape, spec.em.chains))
        result = run_method(spec, prior, problem, kernel=kernel, seed=seed,
                            callback=callback and (lambda u, k: callback()), trace_every=self.trace_every)
        result = cropped(result, offset, tuple(y.shape[-2:]))
        grid = {"kernel_grid": spec.canvas.kernel_grid} if spec.field and spec.blind else {}
        return Restoration(result.image, result.kernel, result.particles, extras={"trace": result.trace, **grid})


def check_option_names(method: str, options: dict) -> None:
    """An :class:`InputError` naming the valid options if ``options`` has one a diffusion restorer does not take."""
    unknown = sorted(set(options) - set(DiffusionRestorer.option_names()))
    if unknown:
        raise InputError(f"method {method}: unknown option(s) {unknown}; valid: {', '.join(DiffusionRestorer.option_names())}")
