"""Samplers: guidance formulas against dense linear algebra and autograd, the analytic Gaussian
prior (ΠGDM → Wiener mean, Fast EM kernel recovery), batch invariance, traces, errors."""

import pytest
import torch
from torch import nn

from fdem.diffusion import Schedule, ScheduleSpec, linear_betas
from fdem.errors import InputError
from fdem.kernel_ops import dirac, kernel_mse, normalize_kernel
from fdem.nets.unet import build_unet
from fdem.physics import blur, psf2otf
from fdem.problem import BlurProblem
from dataclasses import replace

from fdem.mstep import MStepConfig
from fdem.presets import SamplerSpec, resolve
from fdem.sampling import DPS, PiGDM, guided_step, run_loop, save_trace
from fdem.sampling.loop import generator_noise
from fdem.sampling.methods import make_generators
from tests.helpers import sample

IDENTITY_DENOISER = lambda k, s: k  # noqa: E731  (an M-step without kernel prior)
# The old default M-step of these tests: Fast EM re-centred bilinearly (MStepConfig's default is now "spline").
BILINEAR = dict(recenter="bilinear")
TINY_UNET = dict(image_size=16, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32)


def tiny_unet(seed: int = 0, **overrides) -> nn.Module:
    """A small ADM UNet with random weights, including the (normally zero-initialised) output conv."""
    torch.manual_seed(seed)
    net = build_unet({**TINY_UNET, **overrides})
    nn.init.normal_(net.out[-1].weight, std=0.05)
    return net.eval().requires_grad_(False)


class GaussianPrior(nn.Module):
    """Exact ε-prediction for x0 ~ N(0, C) in [−1, 1] units, C circulant with spectrum ``P``.

    E[x0 | x_t] = F⁻¹[√ᾱ P / (ᾱ P + 1 − ᾱ) · F(x_t)], and ε̂ = (x_t − √ᾱ x̂0)/√(1 − ᾱ). Same call
    signature as the UNet: ``forward(x, t)`` with ``t`` the original timesteps.
    """

    def __init__(self, size: int, std: float = 0.25, f0: float = 0.08):
        super().__init__()
        fy = torch.fft.fftfreq(size, dtype=torch.float64).view(-1, 1)
        fx = torch.fft.rfftfreq(size, dtype=torch.float64).view(1, -1)
        shape = 1 / (1 + (fy**2 + fx**2) / f0**2)
        pixel_var = torch.fft.irfft2(shape, s=(size, size))[0, 0]
        self.P = shape * std**2 / pixel_var  # pixel variance std²
        self.abar = torch.cumprod(1 - linear_betas(1000), 0)
        self.size = (size, size)

    def sample(self, shape, generator) -> torch.Tensor:
        white = torch.randn(shape, generator=generator, dtype=torch.float64)
        return torch.fft.irfft2(self.P.sqrt() * torch.fft.rfft2(white), s=self.size)

    def forward(self, x, t):
        a = self.abar[t].view(-1, 1, 1, 1)
        x0 = torch.fft.irfft2(a.sqrt() * self.P / (a * self.P + 1 - a) * torch.fft.rfft2(x.double()), s=self.size)
        return ((x.double() - a.sqrt() * x0) / (1 - a).sqrt()).to(x.dtype)

    def wiener(self, y, kernel, sigma):
        """Posterior mean and covariance spectrum of u = (x0 + 1)/2 given y = k ⊛ u + σn."""
        otf, pu = psf2otf(kernel.double(), self.size), self.P / 4
        mean = 0.5 + torch.fft.irfft2(pu * otf.conj() / (pu * otf.abs() ** 2 + sigma**2) * torch.fft.rfft2(y.double() - 0.5), s=self.size)
        return mean, pu * sigma**2 / (pu * otf.abs() ** 2 + sigma**2)


def _motion_kernel() -> torch.Tensor:
    k = torch.zeros(1, 1, 7, 7)
    k[0, 0, 3, 1:6] = 1.0
    k[0, 0, 2, 5] = 1.0
    k[0, 0, 4, 1] = 0.5
    return normalize_kernel(k)


def _gaussian_problem(size, channels, sigma, seed=1):
    prior = GaussianPrior(size)
    g = torch.Generator().manual_seed(seed)
    u = (prior.sample((1, channels, size, size), g) + 1) / 2
    k = _motion_kernel()
    y = blur(u, k.double()) + sigma * torch.randn(u.shape, generator=g, dtype=torch.float64)
    return prior, u.float(), k, y.float()


def _dense_blur(kernel, h, w):
    """(N, N) matrix of the circular blur of one channel."""
    basis = torch.eye(h * w, dtype=torch.float64).reshape(h * w, 1, h, w)
    return blur(basis, kernel.double()).reshape(h * w, h * w).T


@pytest.mark.parametrize("rule", ["official", "paper"])
def test_pigdm_direction_equals_dense_formula(rule):
    g = torch.Generator().manual_seed(0)
    h, w, n, c = 6, 5, 2, 2
    sched = Schedule.make(1000, 100)
    guidance = PiGDM(sched, rule)
    i, sigma = 40, 0.1
    k = normalize_kernel(torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64))
    u = torch.rand(1, n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(1, c, h, w, generator=g, dtype=torch.float64)
    ours = guidance.direction(u, BlurProblem(y, torch.tensor([sigma], dtype=torch.float64)), k, i)
    H = _dense_blur(k, h, w)
    r2 = guidance.r2[i]
    gram = torch.linalg.inv(r2 * H @ H.T + sigma**2 * torch.eye(h * w, dtype=torch.float64))
    dense = torch.stack([
        torch.stack([H.T @ gram @ (y[0, ch].reshape(-1) - H @ u[0, p, ch].reshape(-1)) for ch in range(c)])
        for p in range(n)
    ]).reshape(1, n, c, h, w)
    assert torch.allclose(ours, dense, atol=1e-10)
    v = sched.posterior_variance[i].double()
    expected_r2 = v / (1 + v) if rule == "official" else 1 - sched.alphas_cumprod[i].double()
    assert r2 == pytest.approx(expected_r2.item(), rel=1e-6)
    assert guidance.weights[i] == pytest.approx((sched.sqrt_alphas_cumprod[i].double() * r2 / (1 + v).sqrt()).item(), rel=1e-6)


def test_dps_direction_is_minus_gradient_of_residual_norm():
    g = torch.Generator().manual_seed(1)
    u = torch.rand(2, 3, 2, 8, 8, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 2, 8, 8, generator=g, dtype=torch.float64)
    k = normalize_kernel(torch.rand(2, 1, 3, 3, generator=g, dtype=torch.float64))
    rho = sum((y[b] - blur(u[b, p : p + 1], k[b : b + 1])[0]).norm() for b in range(2) for p in range(3))
    (grad,) = torch.autograd.grad(rho, u)
    ours = DPS(Schedule.make(1000, 10)).direction(u.detach(), BlurProblem(y, torch.zeros(2, dtype=torch.float64)), k, 3)
    assert torch.allclose(ours, -grad, atol=1e-12)


def test_dps_step_equals_autograd_through_the_network():
    """x_{i−1} = x'_{i−1} − √ᾱ_i ∇_{x_i} Σ_p ‖y − k ⊛ u_p(x_i)‖₂, u = clamp((x̂0 + 1)/2, 0, 1)."""
    net = tiny_unet()
    sched = Schedule.make(1000, 20)
    g = torch.Generator().manual_seed(2)
    b, n, i = 2, 2, 7
    x = torch.randn(b * n, 3, 16, 16, generator=g)
    noise = torch.randn(x.shape, generator=g)
    y = torch.rand(b, 3, 16, 16, generator=g)
    k = normalize_kernel(torch.rand(b, 1, 5, 5, generator=g))
    sigma = torch.full((b,), 0.05)
    ours, kernel, _ = guided_step(net, sched, x, i, BlurProblem(y, sigma), k, DPS(sched), noise)

    x_in = x.clone().requires_grad_(True)
    x0 = sched.eps_to_x0(x_in, net(x_in, sched.timesteps[i].expand(b * n))[:, :3], i, clip=True)
    u = ((x0 + 1) / 2).clamp(0, 1).unflatten(0, (b, n))
    rho = sum((y[j] - blur(u[j], k[j : j + 1])).flatten(1).norm(dim=1).sum() for j in range(b))
    (grad,) = torch.autograd.grad(rho, x_in)
    expected = sched.ddpm_step(x, x0.detach(), i, noise) - sched.sqrt_alphas_cumprod[i] * (sched.T / sched.num_steps) * grad
    assert torch.allclose(ours, expected, atol=1e-5)
    assert kernel is k


def test_pigdm_particle_mean_approaches_wiener_posterior_mean():
    """Errors in units of the exact posterior's standard deviation (an exact sampler's mean of n
    draws would sit at 1/√n); ΠGDM's Gaussian approximation leaves a small bias."""
    sigma = 0.05
    prior, _, k, y = _gaussian_problem(16, 1, sigma)
    mean, post_var = prior.wiener(y, k, sigma)
    weights = torch.ones_like(post_var)
    weights[:, 1:-1] = 2  # the rFFT half-spectrum counts the other half twice
    post_std = (weights * post_var).sum().sqrt()
    errors = []
    for n in (1, 16, 256):
        r = sample("pigdm", prior, y, sigma, kernel=k, particles=n, steps=1000, seed=3)
        errors.append(((r.image.double() - mean).norm() / post_std).item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.25, errors


@pytest.mark.parametrize("method", ["fastem-pigdm", "fastem-dps"])
def test_fast_em_recovers_the_kernel_on_a_gaussian_prior(method):
    sigma = 0.01
    prior, u, k, y = _gaussian_problem(32, 3, sigma)
    steps = 100 if method == "fastem-pigdm" else 250
    r = sample(method, prior, y, sigma, steps=steps, mstep=MStepConfig(kernel_size=7, denoiser=IDENTITY_DENOISER, **BILINEAR))
    start = kernel_mse(dirac(1, 7), k).item()
    assert kernel_mse(r.kernel, k).item() < start / 3
    assert r.kernel.sum().item() == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("method", ["fastem-pigdm", "dps", "diffem-pigdm"])
def test_batch_gives_the_same_results_as_one_image_at_a_time(method):
    net = tiny_unet()
    g = torch.Generator().manual_seed(4)
    y = torch.rand(2, 3, 16, 16, generator=g)
    sigma = torch.tensor([0.05, 0.1])
    true_k = normalize_kernel(torch.rand(2, 1, 5, 5, generator=g))
    common = dict(steps=8, particles=2, em_iters=2, mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR))
    kernel = None if method.startswith(("fastem", "diffem")) else true_k
    together = sample(method, net, y, sigma, kernel=kernel, seed=[11, 12], **common)
    for b in range(2):
        alone = sample(method, net, y[b : b + 1], sigma[b : b + 1], kernel=None if kernel is None else kernel[b : b + 1], seed=11 + b, **common)
        assert torch.allclose(together.particles[b], alone.particles[0], atol=1e-5)
        assert torch.allclose(together.image[b], alone.image[0], atol=1e-5)
        if together.kernel is not None:
            assert torch.allclose(together.kernel[b], alone.kernel[0], atol=1e-5)
    assert together.image.shape == (2, 3, 16, 16) and together.particles.shape == (2, 2, 3, 16, 16)


@pytest.mark.parametrize("rule", ["bilinear", "spline"])  # the old default re-centring and the paper preset's
def test_the_loop_never_reads_tensors_back_to_the_host(monkeypatch, rule):
    net = tiny_unet()
    sched = Schedule.make(1000, 5)
    y = torch.rand(1, 3, 16, 16)
    sigma = torch.tensor([0.05])
    r2 = [0.0] * sched.num_steps
    mstep = MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, recenter=rule)
    problem = BlurProblem(y, sigma)
    hook = lambda u, k, i: mstep.update(problem, u, init=k, weighting="paper", r2=r2[i], recenter=True)  # noqa: E731
    guidance = PiGDM(sched)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside the sampler loop")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    noise = generator_noise(make_generators(0, 1, y.device))
    particles, kernel = run_loop(net, sched, problem, guidance, dirac(1, 5), noise, SamplerSpec(), particles=2, mstep=hook)
    monkeypatch.undo()
    assert particles.shape == (1, 2, 3, 16, 16) and kernel.shape == (1, 1, 5, 5)
    assert all(p.grad is None for p in net.parameters())


def test_trace_and_progress_callback(tmp_path):
    net = tiny_unet()
    y = torch.rand(2, 3, 16, 16)
    calls = []
    r = sample(
        "diffem-dps", net, y, 0.05, steps=6, em_iters=2, trace_every=4,
        mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR),
        callback=lambda u, k: calls.append(k.shape),
    )
    assert len(calls) == resolve("diffem-dps", "tuned", steps=6, em_iters=2).network_calls() == 12
    assert r.trace.steps == [0, 4, 8, 11]
    assert r.trace.x0.shape == (4, 2, 3, 16, 16) and r.trace.kernel.shape == (4, 2, 1, 5, 5)
    from PIL import Image

    gif = save_trace(r.trace, tmp_path / "t.gif", index=1)
    with Image.open(gif) as im:
        assert im.n_frames == 4 and im.size == (16 + 15, 16)  # image + kernel enlarged 3x
    png = save_trace(r.trace, tmp_path / "t.png", columns=3)
    with Image.open(png) as im:
        assert im.size == (3 * 31, 2 * 16)
    with pytest.raises(InputError):
        save_trace(r.trace, tmp_path / "t.jpg")


def test_nonblind_result_has_no_kernel_and_default_steps():
    net = tiny_unet()
    r = sample("pigdm", net, torch.rand(1, 3, 16, 16), 0.02, kernel=dirac(1, 3), steps=3)
    assert r.kernel is None and r.seconds > 0 and r.trace is None
    for preset in ("paper", "tuned"):  # neither changes the guidance's own step count
        assert resolve("pigdm", preset).sampler.steps == resolve("pigdm", preset).network_calls() == 100
        assert resolve("fastem-dps", preset).network_calls() == 1000
        assert resolve("diffem-pigdm", preset, em_iters=3).network_calls() == 300
    assert resolve("fastem-pigdm", "few-step").network_calls() == 25  # the steps run, from the noised observation
    assert resolve("fastem-dps", "few-step").network_calls() == 1000  # DPS keeps its own sampler


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="fastem-foo"), "unknown method"),
        (dict(method="dps"), "non-blind"),
        (dict(method="fastem-pigdm", mstep=MStepConfig(kernel_size=33)), "larger than the image"),
        (dict(method="fastem-pigdm", sigma=-0.1), "sigma"),
        (dict(method="fastem-pigdm", preset="fancy"), "unknown preset"),
        (dict(method="fastem-pigdm", mode="paper"), "unknown option"),  # the old preset keyword is gone
        (dict(method="fastem-pigdm", r2_rule="fancy"), "unknown r2_rule 'fancy'"),
        (dict(method="fastem-pigdm", weighting="fancy"), "unknown M-step weighting"),
        (dict(method="pigdm", kernel=torch.ones(3, 3)), "kernel must be"),
    ],
)
def test_bad_arguments_raise_input_errors(kwargs, match):
    args = dict(sigma=0.05) | kwargs
    with pytest.raises(InputError, match=match):
        sample(args.pop("method"), tiny_unet(), torch.rand(1, 3, 16, 16), args.pop("sigma"), steps=3, **args)


def test_r2_rule_and_weighting_override_the_preset_one_field_each():
    """The old ``mode`` preset of both is gone: each is a field of the preset, overridden by name."""
    base = resolve("fastem-pigdm", "tuned")
    assert (base.sampler.r2_rule, base.em.weighting) == ("official", "official")
    both = resolve("fastem-pigdm", "tuned", r2_rule="paper", weighting="paper")
    assert both == replace(base, sampler=replace(base.sampler, r2_rule="paper"), em=replace(base.em, weighting="paper"))
    assert both.options() == {**base.options(), "r2_rule": "paper", "weighting": "paper"}

    net = tiny_unet()
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    common = dict(steps=4, particles=2, mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR))
    choices = [("official", "official"), ("paper", "paper"), ("official", "paper"), ("paper", "official")]
    runs = {(rule, w): sample("fastem-pigdm", net, y, 0.05, r2_rule=rule, weighting=w, **common).kernel for rule, w in choices}
    assert torch.equal(runs["official", "official"], sample("fastem-pigdm", net, y, 0.05, **common).kernel)
    assert not torch.equal(runs["official", "official"], runs["paper", "paper"])
    assert not torch.equal(runs["official", "paper"], runs["paper", "paper"])  # the r² rule alone matters
    assert not torch.equal(runs["official", "paper"], runs["official", "official"])  # the weighting alone matters


def test_the_prior_schedule_spec_sets_the_steps_schedule():
    net = RecordingTimesteps(tiny_unet())
    y = torch.rand(1, 3, 16, 16)
    sample("pigdm", net, y, 0.05, kernel=dirac(1, 3), steps=3, schedule=ScheduleSpec(T=100, kind="cosine"))
    assert net.seen == [99, 50, 0]


class RecordingTimesteps(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net, self.seen = net, []

    def forward(self, x, t):
        self.seen.append(int(t[0]))
        return self.net(x, t)
