"""``blind-dps``: parallel diffusion of image and kernel (Chung et al., CVPR 2023), docs/design.md §4.

Two DDPM chains run in lockstep on the same respaced schedule: the image ADM on ``x_i`` and a
grayscale ADM of kernels on ``x_i^k`` (``k × k``, any size the kernel network accepts). One step
at index ``i`` uses the primitives of :mod:`fdem.sampling.loop` for each chain (``predict_x0``,
``per_image_noise``, :meth:`~fdem.diffusion.Schedule.ddpm_step`, and the variance of
:func:`~fdem.diffusion.variance_kind` asking for the learned one: ``learned_range`` when the
chain's prior predicts its variance) and adds only the coupling:

* ``u = clamp((x̂0 + 1)/2, 0, 1)`` and ``k̂0 = (x̂0ᵏ + 1)/2`` clipped ≥ 0 and normalised to sum 1;
* ``ρ = ‖y − k̂0 ⊛ u‖₂`` (circular FFT blur, one norm per image, not squared), plus
  ``kernel_l1 · ‖(x̂0ᵏ + 1)/2‖₁`` if asked for;
* ``x_{i−1} = x'_{i−1} − w_i ∇_{x_i} ρ`` and ``x^k_{i−1} = x'^k_{i−1} − w_i ∇_{x^k_i} ρ``, ``w_i = √ᾱ_i·T/S``.

Differences from the authors' code: ``x̂0`` is mapped to ``[0, 1]`` before it is compared with
``y`` (theirs compares ``[−1, 1]`` with ``[0, 1]``), each image has its own norm (theirs: one over
the batch), and the blur is circular (theirs: zero-padded ``conv2d``). Their script adds
``reg_scale · ‖k̂0‖_ord`` with ord 1 (``run_deblur.sh``, weight 1.0) or 0 (default, weight 0.1) on
the *normalised* kernel, where both norms are constant or piecewise constant and have zero
gradient; ``kernel_l1 = 0`` (the default) therefore reproduces it, and a positive ``kernel_l1``
penalises the un-normalised kernel map instead, which does promote sparse kernels.
The step size is ``√ᾱ_i·T/S`` for both chains: their released code's ``√ᾱ_i`` at their S = T
steps (the paper reports a constant 0.3), scaled by the stride at fewer steps
(:func:`~fdem.sampling.guidance.dps_weights`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from fdem.diffusion import Schedule, ScheduleSpec, variance_kind
from fdem.errors import InputError
from fdem.kernel_ops import check_kernel_size, normalize_kernel, recenter
from fdem.physics import blur, check_kernel_fits
from fdem.priors import Prior, load_prior
from fdem.restorer_base import Restoration, Restorer
from fdem.presets import SamplerSpec
from fdem.sampling.guidance import dps_stride
from fdem.sampling.loop import per_image_noise, predict_x0


# The floor subtracted from ``(x̂0ᵏ + 1)/2`` before normalising. The kernel prior learns a background
# of exactly 0 (−1 as an image), but its samples end a hair above it (the last steps' noise, clamped
# at −1): about 0.7 % of the maximum on every pixel, a third of the mass of a 32×32 kernel. 0.02
# brings the mass under 5 % of the maximum to that of the training kernels (2.7 % vs 2.4 % for
# camera-shake 32×32, 16 samples of kernel-small32); 0 is the authors' mapping.
KERNEL_FLOOR = 0.02
# The shipped kernel prior for a kernel size when none is given (others: DEFAULT_PRIORS["kernel"]).
SHIPPED_KERNEL_PRIORS = {32: "kernel-small32", 64: "kernel-small64"}


def kernel_from_x0(x0k: Tensor, floor: float = KERNEL_FLOOR) -> Tensor:
    """``k̂0 = max((x̂0ᵏ + 1)/2 − floor, 0)`` normalised to sum 1, ``(B, 1, k, k)``."""
    return normalize_kernel(((x0k + 1) / 2 - floor).clamp_min(0))


def residual_norm(y: Tensor, u: Tensor, kernel: Tensor) -> Tensor:
    """``ρ_b = ‖y_b − k_b ⊛ u_b‖₂`` per image ``(B,)`` (circular blur)."""
    return (y - blur(u, kernel)).flatten(1).norm(dim=1)


class Chain:
    """One diffusion chain: its network and the variance rule of its DDPM step (the prior's
    learned variance if ``spec`` has one; ``spec=None``: :meth:`ScheduleSpec.assumed_for` the net)."""

    def __init__(self, net: nn.Module, spec: ScheduleSpec | None = None, step_rule: str = "ddpm", eta: float = 1.0):
        spec = ScheduleSpec.assumed_for(net) if spec is None else spec
        self.net, self.var_kind = net, variance_kind(spec, use_learned=True)
        self.step_rule, self.eta = step_rule, eta

    def predict(self, schedule: Schedule, x: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
        """Clamped ``x̂0`` (with the graph to ``x``) and the detached variance channels."""
        x0, extra = predict_x0(self.net, schedule, x, i)
        return x0, None if extra is None else extra.detach()

    def step(self, schedule: Schedule, x: Tensor, x0: Tensor, i: int, extra: Tensor | None, noise: Tensor | None) -> Tensor:
        """The unguided step ``x'_{i−1}`` of the chain's step rule (ancestral or DDIM with η)."""
        var = extra if self.var_kind == "learned_range" else None
        return schedule.step(x, x0.detach(), i, noise, step_rule=self.step_rule, eta=self.eta,
                             var_kind=self.var_kind, var_values=var)


def blind_dps_step(
    image: Chain,
    kernel: Chain,
    schedule: Schedule,
    x: Tensor,
    xk: Tensor,
    i: int,
    y: Tensor,
    noise: tuple[Tensor, Tensor] | None,
    kernel_l1: float = 0.0,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One coupled step; returns ``(x_{i−1}, x^k_{i−1}, u, k̂0)`` (``u`` in ``[0, 1]``)."""
    with torch.enable_grad():
        x_in, xk_in = x.detach().requires_grad_(), xk.detach().requires_grad_()
        x0, extra = image.predict(schedule, x_in, i)
        x0k, extra_k = kernel.predict(schedule, xk_in, i)
        u = ((x0 + 1) / 2).clamp(0, 1)
        k0 = kernel_from_x0(x0k)
        rho = residual_norm(y, u, k0).sum()
        if kernel_l1:
            rho = rho + kernel_l1 * ((x0k + 1) / 2).sum()
        grad_x, grad_k = torch.autograd.grad(rho, (x_in, xk_in))
    weight = schedule.sqrt_alphas_cumprod[i] * dps_stride(schedule)  # DPS's √ᾱ_i·T/S, a device scalar
    noise_x, noise_k = (None, None) if noise is None else noise
    x_next = image.step(schedule, x, x0, i, extra, noise_x) - weight * grad_x
    xk_next = kernel.step(schedule, xk, x0k, i, extra_k, noise_k) - weight * grad_k
    return x_next, xk_next, u.detach(), k0.detach()


@torch.no_grad()
def run_blind_dps(
    image_net: nn.Module,
    kernel_net: nn.Module,
    y: Tensor,
    kernel_size: int,
    steps: int,
    generators: Sequence[torch.Generator],
    kernel_l1: float = 0.0,
    callback: Callable[[], None] | None = None,
    *,
    schedule: ScheduleSpec | None = None,
    kernel_schedule: ScheduleSpec | None = None,
    sampler: SamplerSpec = SamplerSpec(),
) -> tuple[Tensor, Tensor]:
    """Blind-DPS on ``y (B, C, H, W)`` in ``[0, 1]`` (H, W accepted by ``image_net``).

    ``schedule`` and ``kernel_schedule`` are the two priors' specs (None: assumed from the network,
    T = 1000 linear); the chains run in lockstep, so both must have the same T and beta schedule.
    Image ``b`` draws its image noise, then its kernel noise, from ``generators[b]`` at every step.
    ``sampler``: both chains' unguided update (its step rule, "ddpm" or "ddim", and η; the step size
    stays √ᾱ_i); its ``steps`` are not read (``steps`` is).
    Returns ``(image (B, C, H, W) in [0, 1], kernel (B, 1, k, k) sum 1)``.
    """
    spec = ScheduleSpec.assumed_for(image_net) if schedule is None else schedule
    kernel_spec = ScheduleSpec.assumed_for(kernel_net) if kernel_schedule is None else kernel_schedule
    if (kernel_spec.T, kernel_spec.kind) != (spec.T, spec.kind):
        raise InputError(f"kernel_schedule ({kernel_spec.T} {kernel_spec.kind} steps) must match the image "
                         f"prior's schedule ({spec.T} {spec.kind} steps): the two chains run in lockstep")
    schedule = spec.build(steps, y.device)
    image = Chain(image_net, spec, sampler.step_rule, sampler.eta)
    kernel = Chain(kernel_net, kernel_spec, sampler.step_rule, sampler.eta)
    shape, kshape = (1,) + tuple(y.shape[1:]), (1, 1, kernel_size, kernel_size)
    x = per_image_noise(generators, shape, y)
    xk = per_image_noise(generators, kshape, y)
    for i in reversed(range(schedule.num_steps)):
        noise = (per_image_noise(generators, shape, y), per_image_noise(generators, kshape, y)) if i > 0 else None
        x, xk, _, _ = blind_dps_step(image, kernel, schedule, x, xk, i, y, noise, kernel_l1)
        if callback is not None:
            callback()
    return ((x + 1) / 2).clamp(0, 1), kernel_from_x0(xk.clamp(-1, 1))


class BlindDPSRestorer(Restorer):
    """Blind-DPS with an image prior (``prior=None``: the shipped one) and a kernel prior
    (``kernel_prior=None``: the shipped one; a file without an architecture is read as
    ``kernel64``, the authors' ``kernel_checkpoint.pt``); either may be a
    :class:`~fdem.priors.Prior` in memory. Both chains run on the image prior's schedule, which the
    kernel prior must share (T, betas). Images of any size are reflect-padded to the image
    network's multiple and cropped back; the kernel chain works at ``kernel_size`` (a multiple of
    the kernel network's). The returned kernel is re-centred on its centre of mass. σ is not used
    (DPS guidance has no noise term).
    """

    def __init__(
        self,
        method: str,
        device: torch.device | str = "cpu",
        prior: str | Path | Prior | None = None,
        prior_config: str | None = None,
        kernel_prior: str | Path | Prior | None = None,
        kernel_prior_config: str | None = None,
        kernel_size: int = 64,
        steps: int = 1000,
        kernel_l1: float = 0.0,
        step_rule: str = "ddpm",
        eta: float = 1.0,
    ):
        from fdem.padding import network_multiple

        super().__init__(method, device)
        self.sampler = SamplerSpec(steps, step_rule, eta)  # checked there
        if step_rule == "mean":
            raise InputError("blind-dps: step rule 'mean' needs ΠGDM guidance; choose ddpm or ddim")
        check_kernel_size(kernel_size, method)
        if kernel_l1 < 0:
            raise InputError(f"kernel_l1 must be >= 0, got {kernel_l1}")
        self.steps, self.kernel_size, self.kernel_l1 = steps, kernel_size, kernel_l1
        image = load_prior(prior, prior_config, device=self.device)
        if kernel_prior is None and kernel_size in SHIPPED_KERNEL_PRIORS:
            kernel_prior = SHIPPED_KERNEL_PRIORS[kernel_size]
        kernel = load_prior(kernel_prior, kernel_prior_config, device=self.device, kind="kernel")
        self.net, self.kernel_net = image.net, kernel.net
        self.schedules = image.schedule, kernel.schedule
        if self.kernel_net.cfg.in_channels != 1:
            raise InputError(f"the kernel prior must have 1 input channel, got {self.kernel_net.cfg.in_channels}")
        multiple = network_multiple(self.kernel_net)
        if kernel_size % multiple:
            raise InputError(f"kernel size {kernel_size} must be a multiple of {multiple} for this kernel prior")

    def params(self) -> dict:
        extra = {"step_rule": "ddim", "eta": self.sampler.eta} if self.sampler.step_rule == "ddim" else {}
        return {"steps": self.steps, "kernel_size": self.kernel_size, "kernel_l1": self.kernel_l1, **extra}

    def total_steps(self) -> int:
        return self.steps

    def _restore(self, y: Tensor, sigma, kernel: Tensor | None, seed: int | Sequence[int], callback) -> Restoration:
        from fdem.padding import network_multiple, reflect_pad
        from fdem.sampling.methods import make_generators

        channels = self.net.cfg.in_channels
        if y.shape[1] != channels:
            raise InputError(f"blind-dps: the image prior takes {channels}-channel images, got {y.shape[1]} channels")
        h, w = y.shape[-2:]
        padded, (top, left) = reflect_pad(y, network_multiple(self.net))
        check_kernel_fits((self.kernel_size, self.kernel_size), tuple(padded.shape[-2:]))
        generators = make_generators(seed, y.shape[0], y.device)
        image, k = run_blind_dps(self.net, self.kernel_net, padded, self.kernel_size, self.steps, generators,
                                 self.kernel_l1, callback,
                                 schedule=self.schedules[0], kernel_schedule=self.schedules[1],
                                 sampler=self.sampler)
        image = image[..., top : top + h, left : left + w]
        return Restoration(image, recenter(k), particles=image[:, None])

