"""THE sampler loop: DDPM/DDIM steps with a pluggable guidance rule and optional M-step.

Every method of :mod:`fdem.sampling.methods` is this loop with a different guidance rule and
per-step kernel update (Fast EM: :mod:`fdem.sampling.fast_em`; Diffusion EM runs it L times:
:mod:`fdem.sampling.diffusion_em`). One step at respaced index ``i`` (docs/design.md §4, the
authors' order):

1. the network predicts ε̂ at ``x_i`` for all ``B·n`` particles in one call, given the original
   timestep ``τ_i = schedule.timesteps[i]`` (channels past ``C``, a learned variance, are used
   only by ``var_kind="learned_range"``); ``x̂0`` is clamped to ``[−1, 1]`` and
   ``u = clamp((x̂0 + 1)/2, 0, 1)``;
2. the unguided step ``x'_{i−1}``: ancestral (posterior mean + σ_i·noise, no noise at ``i = 0``)
   or DDIM with η (``step_rule="ddim"``, docs/design.md §8);
3. optionally the M-step on the ``n`` particles ``u`` of each image (Fast EM), giving the kernel.
   If the problem has unobserved pixels (a padded margin), they are refilled with ``k ⊛ ū``
   (:meth:`~fdem.problem.BlurProblem.impute`) before the M-step, with the kernel it starts from,
   and again after it, with the new kernel for the guidance;
4. ``x_{i−1} = x'_{i−1} + w_i · (∂u/∂x_i)ᵀ d`` with the rule's weight and direction (one VJP),
   computed with the kernel of step 3: the M-step comes before the guidance.

``step_rule="mean"`` (ΠGDM only, :func:`mean_step`) replaces 2 and 4 by one DDIM step from ΠGDM's
posterior mean of x0, without a VJP. ``first`` < S runs only the last ``first`` steps, starting
from the noised observation (:func:`initial_state`, docs/design.md §8).

Particles are laid out image-major, ``(B·n, C, H, W)`` ↔ ``(B, n, C, H, W)``. Image ``b`` draws
all its noise from its own generator, so its result does not depend on the other images of the
batch. Nothing in the loop reads tensors back to the host; autograd is on only for the network
call of a guided step.
"""

from __future__ import annotations

from typing import Callable, Protocol, Sequence

import torch
from torch import Tensor, nn

from fdem.diffusion import Schedule
from fdem.problem import BlurProblem

MStepHook = Callable[[Tensor, Tensor, int], Tensor]  # (u (B,n,C,H,W), kernel, i) -> kernel
StepCallback = Callable[[Tensor, "Tensor | None"], None]  # (u (B,n,C,H,W), kernel) after each step
Loop = Callable[..., "tuple[Tensor, Tensor]"]  # run_loop with all but (kernel, mstep) bound
# Where the loop's Gaussian draws come from: (shape of one image's particles, a tensor giving device
# and dtype) -> (B·n, C, H, W). One generator per image (:func:`generator_noise`), or a test's
# recorded noise. Called once for the start and once per noisy step (none at i = 0).
NoiseSource = Callable[[tuple, Tensor], Tensor]


class Guidance(Protocol):
    """What the loop needs from a rule (see :mod:`fdem.sampling.guidance`): host-side step weights
    and the direction in ``u``-space that the VJP carries back to ``x_i``."""

    weights: list[float]

    def direction(self, u: Tensor, problem: BlurProblem, kernel: Tensor, i: int) -> Tensor: ...


def per_image_noise(generators: Sequence[torch.Generator], shape: tuple[int, ...], like: Tensor) -> Tensor:
    """``(B·n, C, H, W)`` standard normal noise, image ``b``'s ``n`` particles from ``generators[b]``."""
    return torch.cat(
        [torch.randn(shape, generator=g, device=like.device, dtype=like.dtype) for g in generators]
    )


def generator_noise(generators: Sequence[torch.Generator]) -> NoiseSource:
    """The :data:`NoiseSource` drawing image ``b``'s particles from ``generators[b]``."""
    return lambda shape, like: per_image_noise(generators, shape, like)


def predict_x0(net: nn.Module, schedule: Schedule, x: Tensor, i: int) -> tuple[Tensor, Tensor | None]:
    """Clamped ``x̂0`` at step ``i`` and the network's extra (variance) channels, if any."""
    out = net(x, schedule.timesteps[i].expand(x.shape[0]))
    channels = x.shape[1]
    extra = out[:, channels:] if out.shape[1] > channels else None
    return schedule.eps_to_x0(x, out[:, :channels], i, clip=True), extra


def update_kernel(problem: BlurProblem, particles: Tensor, kernel: Tensor, mstep: MStepHook | None, i: int) -> Tensor:
    """Step 3: the M-step on ``particles`` (if any), between two refills of the unobserved pixels —
    with the kernel it starts from, then with the new one for the guidance (no-ops when all are observed)."""
    problem.impute(particles, kernel)
    if mstep is None:
        return kernel
    kernel = mstep(particles, kernel, i)
    problem.impute(particles, kernel)
    return kernel


def guided_step(
    net: nn.Module,
    schedule: Schedule,
    x: Tensor,
    i: int,
    problem: BlurProblem,
    kernel: Tensor,
    guidance: Guidance,
    noise: Tensor | None,
    *,
    mstep: MStepHook | None = None,
    var_kind: str = "fixed_small",
    step_rule: str = "ddpm",
    eta: float = 1.0,
) -> tuple[Tensor, Tensor, Tensor]:
    """One step ``x_i → x_{i−1}`` of ``step_rule`` ("ddpm" ancestral, "ddim" with ``eta``, "mean":
    :func:`mean_step`; the guidance's weights must be those of the same rule); returns
    ``(x_{i−1}, kernel, u (B, n, C, H, W))``."""
    if step_rule == "mean":
        return mean_step(net, schedule, x, i, problem, kernel, guidance, noise, mstep=mstep, eta=eta)
    batch = problem.y.shape[0]
    weight = guidance.weights[i]
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(weight != 0.0)
        x0, extra = predict_x0(net, schedule, x_in, i)
        u = ((x0 + 1) / 2).clamp(0, 1)
    var_values = extra.detach() if var_kind == "learned_range" and extra is not None else None
    x_next = schedule.step(x, x0.detach(), i, noise, step_rule=step_rule, eta=eta, var_kind=var_kind,
                           var_values=var_values)
    particles = u.detach().unflatten(0, (batch, -1))
    kernel = update_kernel(problem, particles, kernel, mstep, i)
    if weight != 0.0:
        direction = guidance.direction(particles, problem, kernel, i)
        (vjp,) = torch.autograd.grad(u, x_in, direction.flatten(0, 1))
        x_next = x_next + weight * vjp
    return x_next, kernel, particles


def mean_step(net: nn.Module, schedule: Schedule, x: Tensor, i: int, problem: BlurProblem, kernel: Tensor,
              guidance: Guidance, noise: Tensor | None, *, mstep: MStepHook | None = None,
              eta: float = 1.0) -> tuple[Tensor, Tensor, Tensor]:
    """The ``"mean"`` step rule (docs/design.md §8): the network's ``u`` feeds the M-step, then
    ΠGDM's posterior mean ``E[x0 | x_i, y]`` with the new kernel replaces x̂0 in a DDIM step
    (ε̂ recomputed from it). One network forward and no VJP; returns ``(x_{i−1}, kernel, mean)``."""
    x0, _ = predict_x0(net, schedule, x, i)
    particles = ((x0 + 1) / 2).clamp(0, 1).unflatten(0, (problem.y.shape[0], -1))
    kernel = update_kernel(problem, particles, kernel, mstep, i)
    mean = guidance.posterior_mean(particles, problem, kernel, i)
    x_next = schedule.step(x, (2 * mean - 1).flatten(0, 1), i, noise, step_rule="ddim", eta=eta)
    return x_next, kernel, mean


def initial_state(schedule: Schedule, y: Tensor, noise: Tensor, first: int) -> Tensor:
    """``x`` where the loop starts: pure noise for the full schedule, else the observation, mapped
    to [−1, 1], noised to step ``first − 1`` (q(x_i | x0 = 2y − 1): "come closer, diffuse faster")."""
    if first >= schedule.num_steps:
        return noise
    start = (2 * y - 1).clamp(-1, 1).repeat_interleave(noise.shape[0] // y.shape[0], dim=0)
    return schedule.q_sample(start, first - 1, noise)


@torch.no_grad()
def run_loop(
    net: nn.Module,
    schedule: Schedule,
    problem: BlurProblem,
    guidance: Guidance,
    kernel: Tensor,
    noise: NoiseSource,
    sampler,
    *,
    particles: int = 1,
    mstep: MStepHook | None = None,
    var_kind: str = "fixed_small",
    callbacks: Sequence[StepCallback] = (),
) -> tuple[Tensor, Tensor]:
    """Sample ``particles`` posterior draws per image of ``problem.y (B, C, H, W)`` in ``[0, 1]``.

    ``kernel (B, 1, k, k)`` is the (initial) kernel of each image, ``noise`` the source of every
    Gaussian draw, ``sampler`` a :class:`~fdem.presets.SamplerSpec` (its step rule and η give the
    unguided update, :meth:`~fdem.diffusion.Schedule.step`; with ``start`` < 1 only its last
    ``steps`` run, from the noised observation, :func:`initial_state`), ``mstep`` the per-step kernel
    update (None: the kernel is fixed). Returns ``(particles (B, n, C, H, W) in [0, 1], kernel)``;
    ``callbacks`` are called after every step with ``(u, kernel)``.
    """
    y = problem.y
    shape = (particles,) + tuple(y.shape[1:])
    first = schedule.num_steps if sampler.first is None else min(sampler.first, schedule.num_steps)
    x = initial_state(schedule, y, noise(shape, y), first)
    for i in reversed(range(first)):
        x, kernel, u = guided_step(
            net, schedule, x, i, problem, kernel, guidance, noise(shape, y) if i > 0 else None, mstep=mstep,
            var_kind=var_kind, step_rule=sampler.step_rule, eta=sampler.eta,
        )
        for callback in callbacks:
            callback(u, kernel)
    return ((x + 1) / 2).clamp(0, 1).unflatten(0, (y.shape[0], particles)), kernel
