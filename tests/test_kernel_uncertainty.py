"""The kernel's uncertainty in ΠGDM's likelihood (docs/design.md §14): the direction against dense
linear algebra, today's guidance when the kernel is exact, the Gaussian prior, the two-stage run."""

import pytest
import torch

from fdem.errors import InputError
from fdem.kernel_ops import dirac, kernel_mse, normalize_kernel
from fdem.mstep import MStepConfig
from fdem.physics import blur
from fdem.presets import resolve
from fdem.problem import BlurProblem
from fdem.diffusion import Schedule
from fdem.sampling import PiGDM
from tests.helpers import sample
from tests.test_sampling import BILINEAR, IDENTITY_DENOISER, _dense_blur, _gaussian_problem, tiny_unet


def _dense_circulant(spectrum: torch.Tensor) -> torch.Tensor:
    """(N, N) real matrix F⁻¹ diag(spectrum) F for a full (H, W) spectrum (unnormalised DFT)."""
    h, w = spectrum.shape
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, h, w)
    return torch.fft.ifft2(spectrum * torch.fft.fft2(basis)).real.reshape(h * w, h * w).T


def test_direction_equals_dense_formula_with_kernel_error_covariance():
    """d_p = Hᵀ(r²HHᵀ + σ²I + κΣ_p)⁻¹(y − Hu_p), Σ_p the circulant covariance of Δk ⊛ u_p, its
    spectrum V(ω)|U_p(ω)|²/N with V = 1/(Σ_c|Ū_c|²/(N s²) + 1/‖k̂‖²), V(0) = 0 — rebuilt here on the full FFT grid."""
    g = torch.Generator().manual_seed(5)
    h, w, n, c, i, sigma, kappa = 6, 5, 2, 2, 30, 0.05, 3.0
    sched = Schedule.make(1000, 100)
    k = normalize_kernel(torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64))
    u = torch.rand(1, n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(1, c, h, w, generator=g, dtype=torch.float64)
    problem = BlurProblem(y, torch.tensor([sigma], dtype=torch.float64))
    ours = PiGDM(sched, kernel_uncertainty=kappa).direction(u, problem, k, i)

    H, N, r2 = _dense_blur(k, h, w), h * w, PiGDM(sched).r2[i]
    mean = u[0].mean(0)
    s2 = (y[0] - blur(mean[None], k)[0]).square().mean()
    V = 1 / (torch.fft.fft2(mean).abs().square().sum(0) / (N * s2) + 1 / k.square().sum())
    V[0, 0] = 0
    dense = torch.empty_like(u)
    for p in range(n):
        for ch in range(c):
            sigma_p = _dense_circulant(kappa * V * torch.fft.fft2(u[0, p, ch]).abs().square() / N)
            gram = r2 * H @ H.T + sigma**2 * torch.eye(N, dtype=torch.float64) + sigma_p
            dense[0, p, ch] = (H.T @ torch.linalg.solve(gram, y[0, ch].reshape(-1) - H @ u[0, p, ch].reshape(-1))).reshape(h, w)
    assert torch.allclose(ours, dense, atol=1e-10)
    assert not torch.allclose(ours, PiGDM(sched).direction(u, problem, k, i), atol=1e-4)  # the term matters here


def test_an_exact_fit_leaves_todays_guidance():
    """y = k ⊛ u exactly: the M-step's posterior spread vanishes and so does the extra variance."""
    g = torch.Generator().manual_seed(6)
    sched = Schedule.make(1000, 100)
    k = normalize_kernel(torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64))
    u = torch.rand(2, 1, 3, 16, 16, generator=g, dtype=torch.float64)
    problem = BlurProblem(blur(u[:, 0], k), torch.full((2,), 0.02, dtype=torch.float64))
    u_off = (u + 0.05 * torch.randn(u.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    for kappa in (1.0, 100.0):
        exact = PiGDM(sched, kernel_uncertainty=kappa).direction(u, problem, k, 10)
        assert torch.allclose(exact, PiGDM(sched).direction(u, problem, k, 10), rtol=1e-8, atol=1e-12)
        # a particle away from the fit is guided more gently: the kernel's error is part of its noise
        off, plain = (PiGDM(sched, kernel_uncertainty=kappa).direction(u_off, problem, k, 10),
                      PiGDM(sched).direction(u_off, problem, k, 10))
        assert off.norm() < plain.norm()


def test_non_blind_and_dps_methods_take_the_kernel_as_exact():
    assert resolve("pigdm", "photo", kernel_uncertainty=2.0).kernel_uncertainty == 0.0
    assert resolve("fastem-dps", "photo", kernel_uncertainty=2.0).kernel_uncertainty == 0.0
    assert resolve("fastem-pigdm", "photo", kernel_uncertainty=2.0).kernel_uncertainty == 2.0
    assert "kernel_uncertainty" not in resolve("fastem-dps", "photo").options()


@pytest.mark.parametrize("field, value, match", [
    ("kernel_uncertainty", -1.0, "kernel_uncertainty"),
    ("kernel_uncertainty", "a lot", "kernel_uncertainty"),
    ("refine", "yes", "refine must be true or false"),
])
def test_bad_values_are_refused_where_the_spec_is_built(field, value, match):
    with pytest.raises(InputError, match=match):
        resolve("fastem-pigdm", "photo", **{field: value})


def test_fast_em_with_kernel_uncertainty_recovers_the_kernel_on_a_gaussian_prior():
    sigma = 0.01
    prior, u, k, y = _gaussian_problem(32, 3, sigma)
    r = sample("fastem-pigdm", prior, y, sigma, steps=100, kernel_uncertainty=4.0,
               mstep=MStepConfig(kernel_size=7, denoiser=IDENTITY_DENOISER, **BILINEAR))
    assert kernel_mse(r.kernel, k).item() < kernel_mse(dirac(1, 7), k).item() / 3


def test_refine_keeps_the_blind_kernel_and_runs_the_sampler_again():
    net = tiny_unet()
    g = torch.Generator().manual_seed(7)
    y = torch.rand(1, 3, 16, 16, generator=g)
    common = dict(steps=6, mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR), seed=3)
    steps = []
    plain = sample("fastem-pigdm", net, y, 0.05, **common)
    refined = sample("fastem-pigdm", net, y, 0.05, refine=True, callback=lambda u, k: steps.append(k), **common)
    assert torch.equal(refined.kernel, plain.kernel)  # the blind run is the same chain
    assert not torch.allclose(refined.image, plain.image)
    assert len(steps) == 12 and all(s is steps[-1] for s in steps[6:])  # 6 more steps, kernel fixed
    assert resolve("fastem-pigdm", "few-step", refine=True).network_calls() == 2 * resolve("fastem-pigdm", "few-step").network_calls()
    assert resolve("pigdm", "few-step", refine=True).network_calls() == resolve("pigdm", "few-step").network_calls()


def test_with_several_chains_the_spread_of_their_kernels_is_the_uncertainty():
    """Chain-major rows (chain j of image b is row j·B + b): V is Σ_j|K_j − K̄|²/(K − 1) of each image, so
    chains that agree get ΠGDM's guidance unchanged."""
    from fdem.physics import psf2otf
    from fdem.sampling.kernel_uncertainty import chain_spectrum_variance
    from fdem.sampling.restarts import repeat_problem

    g = torch.Generator().manual_seed(8)
    sched, batch, chains = Schedule.make(1000, 50), 2, 3
    problem = repeat_problem(BlurProblem(torch.rand(batch, 3, 12, 12, generator=g, dtype=torch.float64), 0.02), chains)
    u = torch.rand(batch * chains, 1, 3, 12, 12, generator=g, dtype=torch.float64)
    same = normalize_kernel(torch.rand(batch, 1, 5, 5, generator=g, dtype=torch.float64)).repeat(chains, 1, 1, 1)
    agreeing = PiGDM(sched, kernel_uncertainty=5.0, chains=chains).direction(u, problem, same, 7)
    assert torch.allclose(agreeing, PiGDM(sched).direction(u, problem, same, 7), atol=1e-12)
    differ = normalize_kernel(torch.rand(batch * chains, 1, 5, 5, generator=g, dtype=torch.float64))
    otf = psf2otf(differ, (12, 12))
    b = 1  # image 1: rows 1, 3, 5
    mine = otf[[b, b + batch, b + 2 * batch]]
    expected = (mine - mine.mean(0)).abs().square().sum(0) / (chains - 1)
    spread = chain_spectrum_variance(problem, differ, chains)
    assert torch.allclose(spread[b], expected) and torch.allclose(spread[b + 2 * batch], expected)
    assert not torch.allclose(PiGDM(sched, kernel_uncertainty=5.0, chains=chains).direction(u, problem, differ, 7),
                              PiGDM(sched).direction(u, problem, differ, 7), atol=1e-6)


def test_a_second_pass_starts_from_the_first_ones_kernel():
    net = tiny_unet()
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9))
    mstep = MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR)
    one = sample("fastem-pigdm", net, y, 0.05, steps=5, mstep=mstep, seed=2)
    two = sample("fastem-pigdm", net, y, 0.05, steps=5, mstep=mstep, seed=2, passes=2)
    assert not torch.allclose(one.kernel, two.kernel)
    calls = []
    sample("fastem-pigdm", net, y, 0.05, steps=5, mstep=mstep, seed=2, passes=2, callback=lambda u, k: calls.append(k))
    assert len(calls) == 10
    assert resolve("fastem-pigdm", "few-step", passes=3).network_calls() == 75
    assert "passes" not in resolve("diffem-pigdm", "few-step").options()
