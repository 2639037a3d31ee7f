"""Schedule maths: betas, respacing, posterior, variances, the DDPM step, the schedule spec and variance policy."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest
import torch

from fdem.diffusion import (
    Schedule, ScheduleSpec, cosine_betas, linear_betas, respace, respaced_timesteps, variance_kind,
)
from fdem.errors import InputError


@pytest.fixture(scope="module")
def sched() -> Schedule:
    return Schedule.make(T=1000, steps=100)


def images(seed: int = 0, b: int = 3) -> torch.Tensor:
    return torch.rand(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def noise(seed: int = 1, b: int = 3) -> torch.Tensor:
    return torch.randn(b, 3, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_beta_schedules():
    b = linear_betas()
    assert b.dtype == torch.float64 and b.shape == (1000,)
    assert b[0] == 1e-4 and abs(b[-1].item() - 0.02) < 1e-15
    c = cosine_betas(1000)
    assert c.dtype == torch.float64 and c.shape == (1000,)
    assert (c > 0).all() and c.max() <= 0.999 and c[-1] == 0.999
    abar = torch.cumprod(1 - c, 0)
    f = lambda s: math.cos((s + 0.008) / 1.008 * math.pi / 2) ** 2  # noqa: E731
    assert abs(abar[499].item() - f(0.5) / f(0.0)) < 1e-12


def test_respace_100_timesteps():
    ts = respaced_timesteps(1000, 100).tolist()
    assert ts[:4] == [0, 10, 20, 30] and ts[-3:] == [979, 989, 999]
    for j, tau in enumerate(ts):
        exact = Fraction(j * 999, 99)
        assert exact - math.floor(exact) != Fraction(1, 2)  # no ties: rounding mode is moot here
        assert tau == math.floor(exact + Fraction(1, 2)) == round(j * 999 / 99)


def test_respace_rounds_half_up():
    # j·(T−1)/(S−1) = 2.5 at j = 1: half-up gives 3 where Python's round() would give 2.
    assert respaced_timesteps(6, 3).tolist() == [0, 3, 5]


def test_respaced_betas_keep_alphas_cumprod():
    betas = linear_betas()
    ts, new = respace(betas, 100)
    assert ts.dtype == torch.int64 and new.dtype == torch.float64 and new.shape == (100,)
    abar = torch.cumprod(1 - betas, 0)
    prev = 1.0
    for i, tau in enumerate(ts.tolist()):
        assert abs(new[i].item() - (1 - abar[tau].item() / prev)) < 1e-12
        prev = abar[tau].item()
    assert torch.allclose(torch.cumprod(1 - new, 0), abar[ts], rtol=1e-12)


def test_full_respacing_is_identity():
    betas = linear_betas()
    ts, new = respace(betas, 1000)
    assert torch.equal(ts, torch.arange(1000))
    assert torch.allclose(new, betas, rtol=0, atol=1e-12)


def test_schedule_buffers_and_device():
    s = Schedule.make(T=1000, steps=100, kind="cosine")
    assert s.num_steps == 100 and s.T == 1000
    assert s.timesteps.dtype == torch.int64 and s.betas.dtype == torch.float32
    assert len(s.state_dict()) == 0  # rebuilt from (T, steps, kind), never checkpointed
    moved = s.to("meta")
    assert moved.betas.device.type == "meta" and moved.timesteps.device.type == "meta"
    with pytest.raises(InputError, match="linear"):
        Schedule.make(kind="quadratic")
    with pytest.raises(InputError):
        Schedule.make(T=10, steps=11)


@pytest.mark.parametrize("i", [0, 57, 99, torch.tensor([0, 57, 99])])
def test_eps_x0_round_trip(sched, i):
    x, eps = images(), noise()
    x0 = sched.eps_to_x0(x, eps, i)
    abar = sched.alphas_cumprod[i].reshape(-1, 1, 1, 1) if torch.is_tensor(i) else sched.alphas_cumprod[i]
    assert torch.allclose((x / abar.sqrt() - x0) / (1 / abar - 1).sqrt(), eps, atol=1e-3)  # ε back from x̂0
    x0_true = images(2)
    xt = sched.q_sample(x0_true, i, eps)
    assert torch.allclose(sched.eps_to_x0(xt, eps, i), x0_true, atol=1e-3)
    assert sched.eps_to_x0(x, eps, i, clip=True).abs().max() <= 1


def test_per_sample_steps_match_scalar_steps(sched):
    x0, eps = images(), noise()
    i = torch.tensor([3, 40, 99])
    batched = sched.q_sample(x0, i, eps)
    for k in range(3):
        assert torch.allclose(batched[k], sched.q_sample(x0[k : k + 1], int(i[k]), eps[k : k + 1])[0])


def test_posterior_against_closed_form(sched):
    betas = linear_betas()
    ts = respace(betas, 100)[0]
    abar = torch.cumprod(1 - betas, 0)[ts]
    x0, x = images(), noise()
    for i in (1, 10, 50, 99):
        a, a_prev = abar[i].item(), abar[i - 1].item()
        alpha = a / a_prev
        beta = 1 - alpha
        tilde = (1 - a_prev) / (1 - a) * beta
        assert abs(sched.posterior_variance[i].item() - tilde) < 1e-6 * tilde
        # Gaussian product q(x_i | x_{i−1}) q(x_{i−1} | x0): precision-weighted mean.
        var = 1 / (1 / (1 - a_prev) + alpha / beta)
        mean = var * (math.sqrt(a_prev) * x0 / (1 - a_prev) + math.sqrt(alpha) * x / beta)
        got_mean, got_var, got_log = sched.posterior_mean_var(x0, x, i)
        assert torch.allclose(got_mean, mean.float(), atol=1e-5)
        assert abs(got_var.item() - var) < 1e-6 * var and abs(got_log.item() - math.log(var)) < 1e-5
    assert sched.posterior_variance[0] == 0
    assert sched.posterior_log_variance_clipped[0] == sched.posterior_log_variance_clipped[1]


def test_learned_range_endpoints(sched):
    i = torch.tensor([1, 30, 99])
    ones = torch.ones(3, 3, 4, 4)
    var_hi = sched.model_log_variance(ones, i, "learned_range").exp()
    log_lo = sched.model_log_variance(-ones, i, "learned_range")
    assert torch.allclose(var_hi, sched.betas[i].view(-1, 1, 1, 1).expand_as(ones), rtol=1e-5)
    assert torch.allclose(log_lo.exp(), sched.posterior_variance[i].view(-1, 1, 1, 1).expand_as(ones), rtol=1e-5)
    log_fixed = sched.model_log_variance(None, i, "fixed_small")
    assert torch.allclose(log_lo, log_fixed.expand_as(ones))
    with pytest.raises(InputError, match="fixed_small"):
        sched.model_log_variance(ones, i, "fixed_large_typo")


def test_ddpm_step(sched):
    x0, x, z = images(), noise(), noise(5)
    for i in (0, 42, torch.tensor([0, 42, 99])):
        mean, _, _ = sched.posterior_mean_var(x0, x, i)
        assert torch.equal(sched.ddpm_step(x, x0, i, torch.zeros_like(x)), mean)
        assert torch.equal(sched.ddpm_step(x, x0, i, None), mean)
    # Fixed-small noise scale is √β̃_i, and the last step (i = 0) adds none.
    i = torch.tensor([0, 42, 99])
    step = sched.ddpm_step(x, x0, i, z) - sched.ddpm_step(x, x0, i, None)
    assert torch.equal(step[0], torch.zeros_like(step[0]))
    for k in (1, 2):
        assert torch.allclose(step[k], sched.posterior_variance[i[k]].sqrt() * z[k], atol=1e-6)
    # learned_range with v = −1 is the same as fixed_small.
    v = -torch.ones_like(x)
    assert torch.allclose(sched.ddpm_step(x, x0, i, z, "learned_range", v), sched.ddpm_step(x, x0, i, z), atol=1e-6)


def test_schedule_spec_builds_the_respaced_schedule():
    spec = ScheduleSpec()
    assert (spec.T, spec.kind, spec.learned_sigma, spec.prediction) == (1000, "linear", False, "eps")
    built, made = spec.build(100, "cpu"), Schedule.make(1000, 100, "linear", "cpu")
    assert torch.equal(built.timesteps, made.timesteps) and torch.equal(built.betas, made.betas)
    assert ScheduleSpec(T=50, kind="cosine").build().num_steps == 50
    for bad, match in ((dict(T=1), "T"), (dict(kind="quadratic"), "linear"), (dict(prediction="v"), "eps")):
        with pytest.raises(InputError, match=match):
            ScheduleSpec(**bad)


def test_variance_policy_and_assumed_spec():
    learned = ScheduleSpec(learned_sigma=True)
    assert variance_kind(learned, use_learned=True) == "learned_range"
    assert variance_kind(learned, use_learned=False) == "fixed_small"  # the guided loop's choice
    assert variance_kind(ScheduleSpec(), use_learned=True) == "fixed_small"  # nothing learned to use

    class Net(torch.nn.Module):
        def __init__(self, learn_sigma):
            super().__init__()
            self.cfg = type("Cfg", (), {"learn_sigma": learn_sigma})()

    assert ScheduleSpec.assumed_for(Net(True), T=100) == ScheduleSpec(T=100, learned_sigma=True)
    assert not ScheduleSpec.assumed_for(Net(False)).learned_sigma
    assert not ScheduleSpec.assumed_for(torch.nn.Identity()).learned_sigma
