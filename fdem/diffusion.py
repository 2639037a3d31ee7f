"""Diffusion schedule maths: betas, respacing, the DDPM update rule, and the variance policy.

A :class:`ScheduleSpec` says how a prior was trained (T, beta schedule, whether the network also
predicts its variance); ``spec.build(steps, device)`` gives the respaced :class:`Schedule` a
sampler runs on, and :func:`variance_kind` is the one rule for which DDPM variance a sampler uses.
Everything is computed in float64 and stored as float32 buffers of a `Schedule` module, indexed
by the *respaced* step i ∈ {0, …, S−1} (sampling runs i = S−1 … 0); `Schedule.timesteps[i]` is the
original timestep τ_i that the network receives. Every method accepts i as a Python int or as a
(B,) LongTensor of per-sample steps, broadcasts over (B, C, H, W), and never synchronises with
the host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from fdem.errors import InputError

__all__ = ["STEP_RULES", "Schedule", "ScheduleSpec", "cosine_betas", "linear_betas", "respace", "respaced_timesteps", "variance_kind"]

VARIANCE_KINDS = ("fixed_small", "learned_range")
# The update x_i → x_{i−1} (docs/design.md §8): ancestral, DDIM (both with the guidance added by a
# VJP), or the DDIM step taken from ΠGDM's posterior mean of x0 (no VJP; ΠGDM guidance only).
STEP_RULES = ("ddpm", "ddim", "mean")
PREDICTIONS = ("eps",)  # what the network predicts; the samplers implement ε-prediction only


def start_schedule_steps(steps: int, start: float, T: int) -> int:
    """How many steps the full [0, T] respacing needs so that its last ``steps`` cover about
    [0, start·T] (docs/design.md §8): ``steps/start``, at most T."""
    return min(T, max(steps, round(steps / start)))


def linear_betas(T: int = 1000, start: float = 1e-4, end: float = 0.02) -> Tensor:
    """DDPM's linear schedule: T betas evenly spaced from `start` to `end` (float64)."""
    return torch.linspace(start, end, T, dtype=torch.float64)


def cosine_betas(T: int = 1000, offset: float = 0.008, max_beta: float = 0.999) -> Tensor:
    """Improved-DDPM cosine schedule: ᾱ(s) = cos²((s+offset)/(1+offset)·π/2), betas capped at `max_beta`."""
    s = torch.arange(T + 1, dtype=torch.float64) / T
    abar = torch.cos((s + offset) / (1 + offset) * math.pi / 2) ** 2
    return (1 - abar[1:] / abar[:-1]).clamp(max=max_beta)


BETA_SCHEDULES = {"linear": linear_betas, "cosine": cosine_betas}


def respaced_timesteps(T: int, steps: int) -> Tensor:
    """The kept timesteps τ_j = round(j·(T−1)/(S−1)), j = 0..S−1, as a LongTensor (S,).

    Rounding is half-up, done in exact integer arithmetic: ⌊(2j(T−1) + (S−1)) / (2(S−1))⌋.
    A tie (fractional part exactly .5) needs 2j(T−1) ≡ S−1 mod 2(S−1); for T = 1000 and
    S = 100 the fractions are multiples of 1/11, so there is none and Python's banker's
    round() would give the same list: 0, 10, 20, …, 989, 999.
    """
    if not 2 <= steps <= T:
        raise InputError(f"the number of sampling steps must be in [2, {T}], got {steps}")
    j = torch.arange(steps, dtype=torch.int64)
    return (2 * j * (T - 1) + (steps - 1)) // (2 * (steps - 1))


def respace(betas: Tensor, steps: int) -> tuple[Tensor, Tensor]:
    """Keep `steps` of the T timesteps and recompute betas so the kept ᾱ are unchanged.

    Returns (timesteps (S,) int64, new_betas (S,) float64) with new_beta_i = 1 − ᾱ(τ_i)/ᾱ(τ_{i−1})
    and ᾱ(τ_{−1}) = 1.
    """
    betas = betas.to(torch.float64)
    timesteps = respaced_timesteps(betas.shape[0], steps)
    abar = torch.cumprod(1 - betas, dim=0)[timesteps]
    abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
    return timesteps, 1 - abar / abar_prev


def _at(buffer: Tensor, i: int | Tensor, ndim: int) -> Tensor:
    """buffer[i], shaped to broadcast against a batch-first tensor of `ndim` dims."""
    if isinstance(i, int):
        return buffer[i]
    return buffer[i].reshape(-1, *([1] * (ndim - 1)))


def _not_last(i: int | Tensor, like: Tensor) -> Tensor | float:
    """1 where the step adds noise (i > 0), 0 at the final step i = 0."""
    if isinstance(i, int):
        return float(i > 0)
    return (i > 0).to(like.dtype).reshape(-1, *([1] * (like.ndim - 1)))


class Schedule(nn.Module):
    """A (respaced) diffusion schedule with its derived coefficients as float32 buffers.

    Buffers (all of length S): timesteps (int64, original τ_i), betas, alphas_cumprod,
    alphas_cumprod_prev, sqrt_alphas_cumprod, sqrt_one_minus_alphas_cumprod,
    sqrt_recip_alphas_cumprod, sqrt_recipm1_alphas_cumprod, posterior_variance (β̃_i),
    posterior_log_variance_clipped (log β̃ with β̃_0 replaced by β̃_1), log_betas,
    posterior_mean_coef1 (on x̂0) and posterior_mean_coef2 (on x_i). The buffers are not
    saved in state_dicts: they are rebuilt from (T, steps, kind).
    """

    def __init__(self, betas: Tensor, steps: int | None = None):
        super().__init__()
        betas = betas.to(torch.float64)
        self.T = int(betas.shape[0])
        timesteps, b = respace(betas, steps or self.T)
        abar = torch.cumprod(1 - b, dim=0)
        abar_prev = torch.cat([abar.new_ones(1), abar[:-1]])
        post_var = b * (1 - abar_prev) / (1 - abar)
        coefs = {
            "betas": b,
            "alphas_cumprod": abar,
            "alphas_cumprod_prev": abar_prev,
            "sqrt_alphas_cumprod": abar.sqrt(),
            "sqrt_alphas_cumprod_prev": abar_prev.sqrt(),
            "sqrt_one_minus_alphas_cumprod": (1 - abar).sqrt(),
            "sqrt_recip_alphas_cumprod": (1 / abar).sqrt(),
            "sqrt_recipm1_alphas_cumprod": (1 / abar - 1).sqrt(),
            "posterior_variance": post_var,
            # β̃_0 = 0: its log would be -inf, so it borrows β̃_1 (only used for i ≥ 1 anyway).
            "posterior_log_variance_clipped": torch.cat([post_var[1:2], post_var[1:]]).log(),
            "log_betas": b.log(),
            "posterior_mean_coef1": b * abar_prev.sqrt() / (1 - abar),
            "posterior_mean_coef2": (1 - abar_prev) * (1 - b).sqrt() / (1 - abar),
        }
        self._abar64 = abar  # float64 on the host: the DDIM coefficients of any η are computed from it
        self._ddim_tables: dict = {}
        self.register_buffer("timesteps", timesteps, persistent=False)
        for name, value in coefs.items():
            self.register_buffer(name, value.to(torch.float32), persistent=False)

    @classmethod
    def make(
        cls,
        T: int = 1000,
        steps: int | None = None,
        kind: str = "linear",
        device: torch.device | str | None = None,
    ) -> Schedule:
        """A `kind` ("linear" or "cosine") schedule of T steps respaced to `steps` (default T)."""
        if kind not in BETA_SCHEDULES:
            raise InputError(f"unknown beta schedule {kind!r}; valid: {', '.join(BETA_SCHEDULES)}")
        return cls(BETA_SCHEDULES[kind](T), steps).to(device)

    @property
    def num_steps(self) -> int:
        """S, the number of respaced steps."""
        return int(self.timesteps.shape[0])

    def eps_to_x0(self, x: Tensor, eps: Tensor, i: int | Tensor, clip: bool = False) -> Tensor:
        """x̂0 = (x_i − √(1−ᾱ_i)·ε)/√ᾱ_i, optionally clamped to [−1, 1]."""
        x0 = _at(self.sqrt_recip_alphas_cumprod, i, x.ndim) * x - _at(
            self.sqrt_recipm1_alphas_cumprod, i, x.ndim
        ) * eps
        return x0.clamp(-1, 1) if clip else x0

    def q_sample(self, x0: Tensor, i: int | Tensor, noise: Tensor) -> Tensor:
        """Draw x_i ~ q(x_i | x0) = N(√ᾱ_i·x0, (1−ᾱ_i)·I) with the given noise."""
        return _at(self.sqrt_alphas_cumprod, i, x0.ndim) * x0 + _at(
            self.sqrt_one_minus_alphas_cumprod, i, x0.ndim
        ) * noise

    def posterior_mean_var(self, x0: Tensor, x: Tensor, i: int | Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean, variance β̃_i and clipped log-variance of q(x_{i−1} | x_i, x0)."""
        n = x.ndim
        mean = _at(self.posterior_mean_coef1, i, n) * x0 + _at(self.posterior_mean_coef2, i, n) * x
        return mean, _at(self.posterior_variance, i, n), _at(self.posterior_log_variance_clipped, i, n)

    def model_log_variance(
        self, var_values: Tensor | None, i: int | Tensor, kind: str = "fixed_small", ndim: int = 4
    ) -> Tensor:
        """Log-variance of p(x_{i−1} | x_i) (the samplers and losses need only the log).

        "fixed_small": log β̃_i (clipped), shaped to broadcast over `ndim`-dim tensors (var_values
        may be None).
        "learned_range" (improved DDPM): log σ² = f·log β_i + (1−f)·log β̃_i (clipped) with
        f = (v+1)/2 and v the network's variance channels.
        """
        if kind == "fixed_small":
            n = ndim if var_values is None else var_values.ndim
            return _at(self.posterior_log_variance_clipped, i, n)
        if kind == "learned_range":
            if var_values is None:
                raise InputError("learned_range variance needs the network's variance channels")
            n = var_values.ndim
            frac = (var_values + 1) / 2
            return frac * _at(self.log_betas, i, n) + (1 - frac) * _at(self.posterior_log_variance_clipped, i, n)
        raise InputError(f"unknown variance kind {kind!r}; valid: {', '.join(VARIANCE_KINDS)}")

    def ddpm_step(
        self,
        x: Tensor,
        x0: Tensor,
        i: int | Tensor,
        noise: Tensor | None,
        var_kind: str = "fixed_small",
        var_values: Tensor | None = None,
    ) -> Tensor:
        """Ancestral step x_i → x_{i−1}: posterior mean plus σ_i·noise (no noise at i = 0 or if None)."""
        mean, _, _ = self.posterior_mean_var(x0, x, i)
        if noise is None:
            return mean
        log_var = self.model_log_variance(var_values, i, var_kind, ndim=x.ndim)
        return mean + _not_last(i, x) * (0.5 * log_var).exp() * noise

    def x0_to_eps(self, x: Tensor, x0: Tensor, i: int | Tensor) -> Tensor:
        """ε̂ = (x_i − √ᾱ_i·x̂0)/√(1−ᾱ_i): the noise consistent with x_i and a (clamped) x̂0."""
        n = x.ndim
        return (x - _at(self.sqrt_alphas_cumprod, i, n) * x0) / _at(self.sqrt_one_minus_alphas_cumprod, i, n)

    def ddim_coefficients(self, eta: float) -> dict[str, Tensor]:
        """DDIM's per-step coefficients for η, computed in float64 and stored as float32 (S,) tensors
        on the schedule's device (cached per η):

        s_i = η·√((1−ᾱ_{i−1})/(1−ᾱ_i))·√(1−ᾱ_i/ᾱ_{i−1}) (the "std"), c_i = √(1−ᾱ_{i−1}−s_i²) (on ε̂),
        and, with ε̂ = (x_i − √ᾱ_i x̂0)/√(1−ᾱ_i) substituted, b_i = c_i/√(1−ᾱ_i) on x_i and
        a_i = √ᾱ_{i−1} − b_i·√ᾱ_i on x̂0. With η = 1, s_i² = β̃_i, a_i and b_i are the posterior-mean
        coefficients of the ancestral step.
        """
        device = self.timesteps.device
        key = (float(eta), str(device))
        if key not in self._ddim_tables:
            abar = self._abar64
            prev = torch.cat([abar.new_ones(1), abar[:-1]])
            std = eta * ((1 - prev) / (1 - abar) * (1 - abar / prev)).sqrt()
            c = (1 - prev - std.square()).clamp_min(0).sqrt()
            b = c / (1 - abar).sqrt()
            table = {"std": std, "eps": c, "x": b, "x0": prev.sqrt() - b * abar.sqrt(), "x0_eps": prev.sqrt()}
            self._ddim_tables[key] = {k: v.to(device=device, dtype=torch.float32) for k, v in table.items()}
        return self._ddim_tables[key]

    def ddim_score_factor(self, eta: float) -> Tensor:
        """How much of a score term g = ∇_{x_i} log p(y | x_i) a DDIM step carries into x_{i−1}
        (float64 on the host, (S,)): with x̂0 ← x̂0 + (1−ᾱ_i)/√ᾱ_i·g and ε̂ ← ε̂ − √(1−ᾱ_i)·g,
        √ᾱ_{i−1}(1−ᾱ_i)/√ᾱ_i − c_i·√(1−ᾱ_i), c_i = √(1−ᾱ_{i−1}−s_i²); β_i/√α_i at η = 1."""
        abar = self._abar64
        prev = torch.cat([abar.new_ones(1), abar[:-1]])
        var = eta**2 * (1 - prev) / (1 - abar) * (1 - abar / prev)
        c = (1 - prev - var).clamp_min(0).sqrt()
        return prev.sqrt() * (1 - abar) / abar.sqrt() - c * (1 - abar).sqrt()

    def ddim_step(
        self, x: Tensor, x0: Tensor, eps: Tensor | None, i: int | Tensor, noise: Tensor | None, eta: float = 0.0
    ) -> Tensor:
        """DDIM step x_{i−1} = √ᾱ_{i−1}·x̂0 + √(1−ᾱ_{i−1}−s_i²)·ε̂ + s_i·z (:meth:`ddim_coefficients`).

        ``eps=None`` recomputes ε̂ = (x_i − √ᾱ_i x̂0)/√(1−ᾱ_i) from ``x0`` (the loop's choice, with
        the clamped x̂0): the step is then a_i·x̂0 + b_i·x_i + s_i·z, and with η = 1 it is the
        ancestral :meth:`ddpm_step` with β̃ (fixed_small). At i = 0, ᾱ_{−1} = 1: s_0 = 0, x_{−1} = x̂0.
        """
        n, coef = x.ndim, self.ddim_coefficients(eta)
        if eps is None:
            out = _at(coef["x0"], i, n) * x0 + _at(coef["x"], i, n) * x
        else:
            out = _at(coef["x0_eps"], i, n) * x0 + _at(coef["eps"], i, n) * eps
        if noise is None or eta == 0:
            return out
        return out + _not_last(i, x) * _at(coef["std"], i, n) * noise

    def step(
        self,
        x: Tensor,
        x0: Tensor,
        i: int | Tensor,
        noise: Tensor | None,
        *,
        step_rule: str = "ddpm",
        eta: float = 1.0,
        var_kind: str = "fixed_small",
        var_values: Tensor | None = None,
    ) -> Tensor:
        """The unguided step of ``step_rule``: :meth:`ddpm_step` (``var_kind``) or :meth:`ddim_step`
        (``"ddim"`` and ``"mean"``: η, ε̂ recomputed from x0; the variance kind does not apply)."""
        if step_rule in ("ddim", "mean"):
            return self.ddim_step(x, x0, None, i, noise, eta)
        return self.ddpm_step(x, x0, i, noise, var_kind, var_values)


@dataclass(frozen=True)
class ScheduleSpec:
    """How a prior was trained: ``T`` diffusion steps of a ``kind`` beta schedule ("linear" or
    "cosine"), a network that predicts ``prediction`` ("eps") and, if ``learned_sigma``, also its
    variance (improved-DDPM channels past the image's). The samplers' default is the authors'
    prior: T = 1000, linear betas, ε-prediction, variance channels not used."""

    T: int = 1000
    kind: str = "linear"
    learned_sigma: bool = False
    prediction: str = "eps"

    def __post_init__(self):
        if not isinstance(self.T, int) or isinstance(self.T, bool) or self.T < 2:
            raise InputError(f"schedule T must be an integer >= 2, got {self.T!r}")
        if self.kind not in BETA_SCHEDULES:
            raise InputError(f"unknown beta schedule {self.kind!r}; valid: {', '.join(BETA_SCHEDULES)}")
        if self.prediction not in PREDICTIONS:
            raise InputError(f"unsupported prediction {self.prediction!r}; valid: {', '.join(PREDICTIONS)}")

    @classmethod
    def assumed_for(cls, net: nn.Module, T: int = 1000, kind: str = "linear") -> ScheduleSpec:
        """The spec of a network whose training spec is not known: ``T``, ``kind``, and a learned
        variance if its config says it predicts one (``net.cfg.learn_sigma``)."""
        cfg = getattr(net, "cfg", None)
        return cls(T=T, kind=kind, learned_sigma=bool(getattr(cfg, "learn_sigma", False)))

    def build(self, steps: int | None = None, device: torch.device | str | None = None) -> Schedule:
        """The schedule respaced to ``steps`` (default T) on ``device``."""
        return Schedule.make(self.T, steps, self.kind, device)


def variance_kind(spec: ScheduleSpec, use_learned: bool) -> str:
    """The DDPM variance of a sampler: the network's ``learned_range`` if the sampler asks for it
    (Blind-DPS and unconditional sampling do; the guided loop does not, as in the authors' code)
    and the prior has one, else the posterior variance β̃_i (``fixed_small``)."""
    return "learned_range" if use_learned and spec.learned_sigma else "fixed_small"
