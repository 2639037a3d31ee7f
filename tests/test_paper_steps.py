"""One test per choice that makes Fast EM (Algorithm 2) and Diffusion EM what they are; each fails
when that choice is changed (tests/README.md lists the mutation each one kills)."""

from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

import fdem.sampling.methods as methods
from fdem.diffusion import ScheduleSpec
from fdem.kernel_ops import center_of_mass, dirac, normalize_kernel, recenter
from fdem.mstep import MStepConfig, data_term
from fdem.physics import blur
from fdem.problem import BlurProblem
from fdem.sampling import DPS, r2_schedule
from fdem.spline_shift import recenter_spline
from tests.helpers import sample

SIZE, KSIZE, PARTICLES = 8, 3, 3


class RecordingNet(nn.Module):
    """A cheap smooth "ε-network" that records the timesteps it is given."""

    def __init__(self):
        super().__init__()
        self.timesteps = []

    def forward(self, x, t):
        self.timesteps.append(t)
        return 0.3 * x + 0.2 * torch.sin(3 * x)


@dataclass(frozen=True)
class RecordingMStep(MStepConfig):
    """The real M-step, recording what every call got and returned, and its estimate before any
    re-centring (``raw``)."""

    calls: list = field(default_factory=list)

    def update(self, problem, x, **kwargs):
        kernel = super().update(problem, x, **kwargs)
        raw = super().update(problem, x, **{**kwargs, "recenter": False})
        self.calls.append(dict(x=x, out=kernel, raw=raw, **kwargs))
        return kernel


def _tiny(seed=0, channels=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, PARTICLES, channels, SIZE, SIZE, generator=g, dtype=torch.float64)
    y = torch.rand(1, channels, SIZE, SIZE, generator=g, dtype=torch.float64)
    k = normalize_kernel(torch.rand(1, 1, KSIZE, KSIZE, generator=g, dtype=torch.float64))
    return x, y, k


def _conv_matrix(image):
    """Dense (N, N) matrix of z ↦ image ⊛ z (circular, z's origin at pixel (0, 0))."""
    basis = torch.eye(image.numel(), dtype=image.dtype).reshape(-1, *image.shape)
    return torch.fft.ifft2(torch.fft.fft2(image) * torch.fft.fft2(basis)).real.reshape(image.numel(), -1).T


def _dense_mstep_solve(y, x, k, alpha, r2):
    """argmin_z Σ_p E‖y − (x_p + e) ⊛ z‖² + α‖z − k‖², e ~ N(0, r²I), per channel, channel mean,
    cropped: the expectation of each MᵀM term adds E[M_eᵀM_e] = N·r²·I."""
    n_pix = SIZE * SIZE
    place = [((i - KSIZE // 2) % SIZE, (j - KSIZE // 2) % SIZE) for i in range(KSIZE) for j in range(KSIZE)]
    k_full = torch.zeros(SIZE, SIZE, dtype=torch.float64)
    for (a, b), v in zip(place, k.flatten()):
        k_full[a, b] = v
    zs = []
    for c in range(y.shape[1]):
        mats = [_conv_matrix(x[0, p, c]) for p in range(x.shape[1])]
        lhs = sum(m.T @ m + n_pix * r2 * torch.eye(n_pix, dtype=torch.float64) for m in mats)
        lhs = lhs + alpha * torch.eye(n_pix, dtype=torch.float64)
        rhs = sum(m.T @ y[0, c].reshape(-1) for m in mats) + alpha * k_full.reshape(-1)
        zs.append(torch.linalg.solve(lhs, rhs).reshape(SIZE, SIZE))
    z = torch.stack(zs).mean(0)
    return torch.stack([z[a, b] for a, b in place]).reshape(KSIZE, KSIZE)


SIGMA, BETA = 0.1, 1e3
ALPHAS = [("official", SIGMA**2 * BETA), ("paper", PARTICLES * BETA * SIGMA**2)]


@pytest.mark.parametrize("weighting, alpha", ALPHAS, ids=["official", "paper"])
def test_alpha_is_sigma2_beta_official_and_n_beta_sigma2_in_paper_weighting(weighting, alpha):
    """Eq. 24: α = nβσ² (paper); the authors' code: α = σ²β. Here r² = 0, so only α differs."""
    x, y, k = _tiny()
    ours = data_term(BlurProblem(y, SIGMA), x, beta=BETA, weighting=weighting, r2=0.0).solve(k)
    assert torch.allclose(ours[0, 0], _dense_mstep_solve(y, x, k, alpha, 0.0), atol=1e-10)


def test_paper_weighting_adds_the_n_N_r2_term_of_eq33():
    """Eq. 33: the expected likelihood over x ~ N(x̂_p, r²I) adds n·N·r² to the data step; the
    official weighting ignores r²."""
    x, y, k = _tiny()
    r2 = 0.25
    problem = BlurProblem(y, SIGMA)
    paper = data_term(problem, x, beta=BETA, weighting="paper", r2=r2).solve(k)
    assert torch.allclose(paper[0, 0], _dense_mstep_solve(y, x, k, PARTICLES * BETA * SIGMA**2, r2), atol=1e-10)
    official = data_term(problem, x, beta=BETA, weighting="official", r2=r2).solve(k)
    assert torch.allclose(official[0, 0], _dense_mstep_solve(y, x, k, BETA * SIGMA**2, 0.0), atol=1e-10)


def _independent_r2(steps):
    """Both r² rules from T = 1000 linear betas, respaced by hand (float64, no Schedule)."""
    abar = torch.cumprod(1 - torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64), 0)
    kept = abar[[round(j * 999 / (steps - 1)) for j in range(steps)]]
    prev = torch.cat([torch.ones(1, dtype=torch.float64), kept[:-1]])
    v = (1 - kept / prev) * (1 - prev) / (1 - kept)  # β̃_i
    return {"official": v / (1 + v), "paper": 1 - kept}


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_r2_rules_are_the_schedules_numbers(rule):
    """official r² = v/(1+v), v = β̃_i; paper (ΠGDM) r² = 1 − ᾱ_i."""
    ours = torch.tensor(r2_schedule(ScheduleSpec().build(100), rule), dtype=torch.float64)
    assert torch.allclose(ours, _independent_r2(100)[rule], rtol=1e-5, atol=2e-7)  # float32 schedule buffers


def _fast_em(mstep, method="fastem-dps", steps=4, **kwargs):
    """``method`` under the tuned preset (the old default) with ``mstep`` as its M-step; λ as given
    (lam_rule "fixed": the noise rule scales the PnP weight only, and these M-steps are ℓ1)."""
    g = torch.Generator().manual_seed(3)
    y = torch.rand(1, 2, SIZE, SIZE, generator=g)
    return sample(method, RecordingNet(), y, 0.05, mstep=mstep, particles=2, steps=steps, em_iters=3, lam_rule="fixed",
                  **kwargs)


def _mstep(recenter="bilinear", **kwargs):
    """An ℓ1 M-step; ``recenter`` bilinear as the old default (MStepConfig's own default is now "spline")."""
    return RecordingMStep(kernel_size=5, reg="l1", lam=1.0, beta=1e3, iters=3, recenter=recenter, **kwargs)


@pytest.mark.parametrize("method", ["fastem-dps", "diffem-dps"])
def test_the_mstep_is_warm_started_from_the_previous_kernel(method):
    mstep = _mstep()
    us = []
    _fast_em(mstep, method, callback=lambda u, k: us.append(u))
    assert torch.equal(mstep.calls[0]["init"], dirac(1, 5))
    for before, after in zip(mstep.calls, mstep.calls[1:]):
        assert after["init"] is before["out"]
    if method == "fastem-dps":  # Fast EM's M-step sees the current x̂0 of the particles at every step
        assert len(mstep.calls) == len(us) and all(torch.equal(c["x"], u) for c, u in zip(mstep.calls, us))


def test_hqs_iterates_from_its_init():
    x, y, k = _tiny()
    problem = BlurProblem(y, SIGMA)
    mstep = MStepConfig(kernel_size=KSIZE, reg="l1", lam=0.5, beta=BETA, iters=1)
    ours = mstep.update(problem, x, init=k, weighting="official", r2=0.0, recenter=False)
    z = normalize_kernel(data_term(problem, x, beta=BETA, weighting="official").solve(k))
    assert torch.allclose(ours, normalize_kernel((z - 0.5 / BETA).clamp_min(0)), atol=1e-12)


def test_fast_em_recenters_every_kernel_and_diffusion_em_does_not():
    """Fast EM's kernel is its M-step estimate shifted to put the centre of mass at (k//2, k//2) by the
    M-step's rule (bilinear: fdem's; spline: the authors'); Diffusion EM's is the estimate itself under
    either rule (the estimates here are never centred already)."""
    for rule, shift in (("bilinear", recenter), ("spline", recenter_spline)):
        fast, slow = _mstep(rule), _mstep(rule)
        _fast_em(fast, "fastem-dps")
        _fast_em(slow, "diffem-dps")
        assert len(fast.calls) == 4 and len(slow.calls) == 3
        for call in fast.calls + slow.calls:
            assert (center_of_mass(call["raw"]) - 2).abs().max() > 1e-2
        assert all(torch.allclose(c["out"], shift(c["raw"]), atol=1e-7) for c in fast.calls), rule
        assert all(torch.equal(c["out"], c["raw"]) for c in slow.calls), rule
    # the two rules differ on these kernels, so each assertion above tells them apart
    assert not torch.allclose(recenter(fast.calls[0]["raw"]), recenter_spline(fast.calls[0]["raw"]), atol=1e-5)


def test_the_mstep_runs_before_the_guidance_of_its_step(monkeypatch):
    seen = []

    class Recording(DPS):
        def direction(self, u, problem, kernel, i):
            seen.append(kernel)
            return super().direction(u, problem, kernel, i)

    monkeypatch.setattr(methods, "make_guidance", lambda name, schedule, sampler, *uncertainty: Recording(schedule))
    mstep = _mstep()
    _fast_em(mstep, "fastem-dps")
    assert len(seen) == len(mstep.calls) == 4
    assert all(kernel is call["out"] for kernel, call in zip(seen, mstep.calls))


def test_the_dps_norm_is_not_squared():
    x, y, k = _tiny()
    u = x.clone().requires_grad_(True)
    rho = sum((y[0] - blur(u[0, p : p + 1], k)[0]).norm() for p in range(PARTICLES))  # ‖·‖₂, not ‖·‖₂²
    (grad,) = torch.autograd.grad(rho, u)
    ours = DPS(ScheduleSpec().build(10)).direction(x, BlurProblem(y, SIGMA), k, 3)
    assert torch.allclose(ours, -grad, atol=1e-12)


def test_no_noise_at_the_last_step():
    """ΠGDM's official r² is 0 at i = 0 (no guidance) and the i = 0 posterior mean is x̂0, so the
    final particles are the last x̂0 exactly when no noise is added."""
    sched = ScheduleSpec().build(5)
    x0, x, noise = (torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(s)) for s in range(3))
    assert torch.equal(sched.ddpm_step(x, x0, 0, noise), sched.ddpm_step(x, x0, 0, None))
    us = []
    r = sample("pigdm", RecordingNet(), torch.rand(1, 2, SIZE, SIZE), 0.05, kernel=dirac(1, 3), steps=5,
               particles=2, callback=lambda u, k: us.append(u))
    assert torch.allclose(r.particles, us[-1], atol=1e-6)


def test_the_network_gets_the_original_timesteps():
    net = RecordingNet()
    sample("pigdm", net, torch.rand(1, 2, SIZE, SIZE), 0.05, kernel=dirac(1, 3), steps=100)
    seen = [int(t[0]) for t in net.timesteps]
    expected = [round(j * 999 / 99) for j in range(100)]
    assert expected[:3] == [0, 10, 20] and expected[-2:] == [989, 999]
    assert seen == expected[::-1]


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_fast_em_mstep_uses_the_runs_r2_and_weighting(rule):
    """Step i's M-step gets r_i² of the run's r² rule (Eq. 33 needs it in paper weighting) and the run's
    weighting, each as its own option (both the same, then crossed)."""
    other = {"official": "paper", "paper": "official"}[rule]
    expected = r2_schedule(ScheduleSpec().build(4), rule)[::-1]
    assert expected != r2_schedule(ScheduleSpec().build(4), other)[::-1]
    for weighting in (rule, other):
        mstep = _mstep()
        _fast_em(mstep, "fastem-pigdm", r2_rule=rule, weighting=weighting)
        assert [c["r2"] for c in mstep.calls] == expected
        assert len(mstep.calls) == 4 and all(c["weighting"] == weighting for c in mstep.calls)
