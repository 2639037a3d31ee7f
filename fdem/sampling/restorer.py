"""The diffusion methods (dps, pigdm, fastem-*, diffem-*) as restorers of :mod:`fdem.restorers`."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from fdem.diffusion import check_start, check_step_rule, check_steps
from fdem.errors import InputError
from fdem.kernel_ops import check_kernel_size
from fdem.method_table import lookup
from fdem.mstep import MStepConfig
from fdem.priors import Prior, load_prior
from fdem.sampling.guidance import check_dps_step_rule
from fdem.sampling.restarts import check_restarts
from fdem.restoration import Restoration, Restorer
from fdem.padding import network_multiple
from fdem.sampling.methods import check_kernel_init, resolve_mode
from fdem.sampling.tiled import Tiling

# circular: pad to the UNet's multiple only; reflect / smooth: also the kernel radius, mirrored or smoothly
# periodised; impute: the smooth margin as a start, then treated as missing data (refilled by the model every step)
BORDERS = ("circular", "reflect", "smooth", "impute")


class DiffusionRestorer(Restorer):
    """Posterior sampling with a score prior: a file, a shipped prior's name, a
    :class:`~fdem.priors.Prior` in memory, or None (the shipped natural-image prior). The sampler
    runs on the prior's schedule.

    Images of any size are reflect-padded to the UNet's multiple (:func:`fdem.sampling.padded.run_padded`);
    ``border="reflect"`` or ``"smooth"`` (photographs) also pads every side by the kernel's radius,
    mirrored or smoothly periodised (:func:`fdem.padding.smooth_pad`), so the circular model wraps
    around inside the cropped margin; ``"impute"`` starts from the smooth margin and then treats it as
    missing data, refilled with ``k ⊛ x̂`` every step, so it holds no false evidence; ``"circular"`` (the default: benchmark observations made by
    circular blur) does not. ``tiled`` runs the UNet on ``tile``-sized windows (default the
    prior's native size but at least 128, for images with a side over 256; ``overlap`` a quarter of it, ``max_batch`` windows per call) when the padded
    image is larger than one (:mod:`fdem.sampling.tiled`; an explicit ``tile`` must fit in the image).
    The blind methods start from a Dirac of ``kernel_size``, or with ``kernel_init="alternation"`` from the
    prior-free alternation's kernel (:data:`~fdem.sampling.methods.KERNEL_INITS`); the M-step's PnP kernel denoiser is
    the shipped one unless ``kernel_denoiser`` names a file, with its tuned λ unless ``lam`` is given;
    ``kernel_relax`` over-relaxes each M-step from its warm start (:class:`~fdem.mstep.MStepConfig` ``relax``).
    ``restarts`` = K runs K chains per image and keeps the one that fits ``y`` best (:mod:`fdem.sampling.restarts`).
    ``precision`` (fp32, tf32, bf16), ``channels_last`` and ``compile`` are the UNet's speed switches
    (:mod:`fdem.sampling.fast_path`); None/auto take the device default, and rows record them. A
    prior in memory whose network is already wrapped by them runs as it is (the speed grid's case).
    """

    def __init__(
        self,
        method: str,
        device: torch.device | str = "cpu",
        prior: str | Path | Prior | None = None,
        prior_config: str | None = None,
        prior_prefix: str | None = None,
        kernel_size: int = 33,
        particles: int = 1,
        steps: int | None = None,
        mode: str = "official",
        r2_rule: str | None = None,
        weighting: str | None = None,
        recenter_rule: str | None = None,
        em_iters: int = 10,
        lam: float | None = None,
        kernel_denoiser: str | Path | None = None,
        trace_every: int = 0,
        precision: str | None = None,
        channels_last: bool | None = None,
        compile: bool | None = None,
        border: str = "circular",
        tiled: bool = False,
        tile: int | None = None,
        overlap: int | None = None,
        max_batch: int = 2,
        step_rule: str = "ddpm",
        eta: float = 1.0,
        start: float = 1.0,
        restarts: int = 1,
        kernel_init: str = "dirac",
        kernel_relax: float = 1.0,
    ):
        from fdem.nets.kernel_denoiser import denoiser_for_kernel
        from fdem.sampling.fast_path import SpeedOptions

        super().__init__(method, device)
        entry = lookup(method)
        resolve_mode(mode, r2_rule, weighting)  # validated here, once
        if particles < 1 or em_iters < 1 or trace_every < 0:
            raise InputError("particles and EM iterations must be >= 1, the trace interval >= 0")
        check_restarts(restarts)
        check_kernel_init(kernel_init)
        check_steps(steps)
        eta, start = check_step_rule(step_rule, eta), check_start(start)
        if entry.guidance == "dps":
            check_dps_step_rule(step_rule)
        check_kernel_size(kernel_size, method)
        self.options = dict(particles=particles, steps=steps or entry.default_steps, mode=mode, r2_rule=r2_rule,
                            weighting=weighting, em_iters=em_iters if entry.em == "diffem" else None)
        self.kernel_size, self.trace_every, self.lam = kernel_size, trace_every, lam
        speed = SpeedOptions(precision or "auto", channels_last, compile).resolve(self.device)
        loaded = load_prior(prior, prior_config, prior_prefix, self.device)
        self.net, self.schedule = loaded.accelerated(speed, self.device), loaded.schedule
        uses_denoiser = self.blind and lam != 0
        denoiser = denoiser_for_kernel(kernel_size, kernel_denoiser, self.device) if uses_denoiser else None
        self.mstep = MStepConfig(kernel_size=kernel_size, lam=lam, denoiser=denoiser, relax=kernel_relax,
                                 recenter_rule=recenter_rule or MStepConfig.recenter_rule)
        if recenter_rule is not None:
            self.options["recenter_rule"] = recenter_rule
        self.step_options = {"step_rule": step_rule, "eta": eta, "start": start}  # docs/design.md §8
        if step_rule != "ddpm":  # rows of the default ancestral rule keep their columns
            self.options.update(step_rule=step_rule, eta=eta)
        if start < 1:
            self.options["start"] = start
        if restarts > 1:  # rows without restarts keep their columns
            self.options["restarts"] = restarts
        if kernel_init != "dirac" and self.blind:  # rows of the paper's Dirac start keep their columns
            self.options["kernel_init"] = kernel_init
        if kernel_relax != 1 and self.blind:  # rows of the paper's plain M-step keep their columns
            self.options["kernel_relax"] = kernel_relax
        if border not in BORDERS:
            raise InputError(f"border must be one of {', '.join(BORDERS)}, got {border!r}")
        self.border = border
        self.tiling = Tiling(tile, overlap, max_batch) if tiled else None

    @property
    def channels(self) -> int:
        return self.net.cfg.in_channels

    def params(self) -> dict:
        return {**{k: v for k, v in self.options.items() if v is not None}, **self.net.options.row()}

    @property
    def chains(self) -> int:
        """Samples run side by side per image: its particles times its restarts (one batch)."""
        return self.options["particles"] * self.options.get("restarts", 1)

    def margin(self, kernel_size: int | None = None) -> int:
        """Pixels of reflected border on each side: the kernel's radius for ``border="reflect"``, else 0."""
        return (kernel_size or self.kernel_size) // 2 if self.border != "circular" else 0

    def canvas(self, height: int, width: int, kernel_size: int | None = None) -> tuple[int, int]:
        """The size the sampler works at for an image of ``height × width``: border and UNet multiple added."""
        multiple = network_multiple(self.net)
        return tuple(-(-(side + 2 * self.margin(kernel_size)) // multiple) * multiple for side in (height, width))

    def network_for(self, height: int, width: int) -> torch.nn.Module:
        """The UNet as it runs on a ``height × width`` canvas: tiled if asked and larger than one tile (checked)."""
        return self.net if self.tiling is None else self.tiling.wrap(self.net, height, width)

    def total_steps(self) -> int:
        return lookup(self.method).net_calls(self.options["steps"], self.options["em_iters"] or 1)

    def _restore(self, y: Tensor, sigma, kernel: Tensor | None, seed: int | Sequence[int], callback) -> Restoration:
        from fdem.sampling.padded import run_padded

        result = run_padded(
            self.net, y, sigma, self.method, margin=self.margin(None if kernel is None else kernel.shape[-1]),
            padding="smooth" if self.border in ("smooth", "impute") else "reflect", impute=self.border == "impute",
            tiling=self.tiling, kernel=None if self.blind else kernel, mstep=self.mstep,
            particles=self.options["particles"], restarts=self.options.get("restarts", 1),
            kernel_init=self.options.get("kernel_init", "dirac"), steps=self.options["steps"], seed=seed,
            mode=self.options["mode"], r2_rule=self.options["r2_rule"], weighting=self.options["weighting"], em_iters=self.options["em_iters"] or 1, trace_every=self.trace_every,
            schedule=self.schedule, callback=callback and (lambda u, k: callback()), **self.step_options,
        )
        return Restoration(result.image, result.kernel, result.particles, extras={"trace": result.trace})
