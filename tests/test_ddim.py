"""The DDIM step rule (docs/design.md §8): the η = 1 identity with the ancestral step, the guided
weights on the Gaussian prior of tests/test_sampling.py, option checks, and every guided method."""

import os
import re
import subprocess
import sys

import pytest
import torch

from fdem.diffusion import Schedule
from fdem.errors import InputError
from fdem.mstep import MStepConfig
from fdem.physics import psf2otf
from fdem.restorers import build_restorer
from fdem.presets import SamplerSpec, resolve
from fdem.sampling import PiGDM, run_loop
from fdem.sampling.guidance import pigdm_weights
from fdem.sampling.loop import generator_noise
from fdem.sampling.methods import make_generators
from fdem.problem import BlurProblem
from tests.helpers import sample
from tests.test_blind_dps import priors  # noqa: F401  (the tiny Blind-DPS priors fixture)
from tests.test_sampling import IDENTITY_DENOISER, _gaussian_problem, tiny_unet

BILINEAR = dict(recenter="bilinear")  # the old default re-centring of an MStepConfig built here (now "spline")


def _xs(shape=(2, 3, 8, 8), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(3)]


@pytest.mark.parametrize("steps", [1000, 100, 10])
def test_ddim_with_eta_1_is_the_ancestral_step(steps):
    sched = Schedule.make(1000, steps)
    x, x0, z = _xs()
    x0 = x0.clamp(-1, 1)
    for i in range(steps):
        torch.testing.assert_close(sched.ddim_step(x, x0, None, i, z, 1.0), sched.ddpm_step(x, x0, i, z), rtol=0, atol=1e-6)
    # per-sample steps too, and the explicit-ε form agrees with the recomputed one
    i = torch.tensor([steps - 1, 0])
    torch.testing.assert_close(sched.ddim_step(x, x0, None, i, z, 1.0), sched.ddpm_step(x, x0, i, z), rtol=0, atol=1e-6)
    eps = sched.x0_to_eps(x, x0, 3)
    torch.testing.assert_close(sched.ddim_step(x, x0, eps, 3, z, 0.4), sched.ddim_step(x, x0, None, 3, z, 0.4), rtol=0, atol=1e-5)


def test_ddim_with_eta_0_is_deterministic_and_ends_on_x0():
    sched = Schedule.make(1000, 20)
    x, x0, z = _xs()
    assert torch.equal(sched.ddim_step(x, x0, None, 7, z, 0.0), sched.ddim_step(x, x0, None, 7, None, 0.0))
    torch.testing.assert_close(sched.ddim_step(x, x0, None, 0, z, 0.7), x0)


def test_ddpm_weights_are_unchanged_and_ddim_weight_is_the_damped_guided_score_coefficient():
    sched = Schedule.make(1000, 100)
    v, abar = sched.posterior_variance.double(), sched.alphas_cumprod.double()
    p = PiGDM(sched, "official")
    assert p.weights == (abar.sqrt() * torch.tensor(p.r2, dtype=torch.float64) / (1 + v).sqrt()).tolist()
    beta = sched.betas.double()
    torch.testing.assert_close(sched.ddim_score_factor(1.0), beta / (1 - beta).sqrt(), rtol=1e-5, atol=1e-9)
    torch.testing.assert_close(torch.tensor(pigdm_weights(sched, p.r2, "ddim", 1.0), dtype=torch.float64),
                               sched.alphas_cumprod_prev.double().sqrt() * beta, rtol=1e-5, atol=1e-9)


def _posterior_error(prior, y, k, sigma, guidance, sched, n, step_rule="ddim"):
    mean, post_var = prior.wiener(y, k, sigma)
    weights = torch.ones_like(post_var)
    weights[:, 1:-1] = 2
    post_std = (weights * post_var).sum().sqrt()
    samples, _ = run_loop(prior, sched, BlurProblem(y, torch.tensor([sigma])), guidance, k,
                          generator_noise(make_generators(3, 1, "cpu")), SamplerSpec(step_rule=step_rule, eta=1.0),
                          particles=n)
    return ((samples.mean(dim=1).double() - mean).norm() / post_std).item()


class ExactVariancePiGDM(PiGDM):
    """ΠGDM with the Gaussian prior's exact Var[u | x_i] per frequency in place of the isotropic r²:
    what is left of the error is the DDIM step and its guidance weight."""

    def __init__(self, prior, sched, sigma):
        super().__init__(sched, "official", "ddim", 1.0)
        self.prior, self.abar, self.sigma = prior, sched.alphas_cumprod.double().tolist(), sigma

    def direction(self, u, problem, kernel, i):
        a, P = self.abar[i], self.prior.P
        var_u = P / 4 * (1 - a) / (a * P + 1 - a)
        otf = psf2otf(kernel.double(), self.prior.size)
        res = torch.fft.rfft2(problem.y.double()[:, None]) - otf[:, None] * torch.fft.rfft2(u.double())
        return torch.fft.irfft2(otf.conj()[:, None] * res / (var_u * otf.abs() ** 2 + self.sigma**2), s=self.prior.size).to(u.dtype)


def test_few_step_ddim_particle_mean_approaches_the_wiener_mean():
    """In posterior standard deviations: with the exact x0 | x_i variance, 20 DDIM steps with the
    §8 weight (and 10 with its undamped score coefficient) reach the Wiener mean as particles grow;
    with ΠGDM's isotropic official r² the error still falls with the particles, to a floor set by
    that approximation (docs/design.md §8)."""
    sigma = 0.05
    prior, _, k, y = _gaussian_problem(16, 1, sigma)
    sched = Schedule.make(1000, 20)
    exact = [_posterior_error(prior, y, k, sigma, ExactVariancePiGDM(prior, sched, sigma), sched, n) for n in (1, 16, 256)]
    assert exact[0] > exact[1] > exact[2] and exact[2] < 0.15, exact
    official = [_posterior_error(prior, y, k, sigma, PiGDM(sched, "official", "ddim", 1.0), sched, n) for n in (1, 16)]
    assert official[0] > official[1] and official[1] < 0.75, official
    sched = Schedule.make(1000, 10)
    score = ExactVariancePiGDM(prior, sched, sigma)
    score.weights = sched.ddim_score_factor(1.0).tolist()
    exact = [_posterior_error(prior, y, k, sigma, score, sched, n) for n in (1, 16, 256)]
    assert exact[0] > exact[1] > exact[2] and exact[2] < 0.1, exact


class ExactVarianceMean(ExactVariancePiGDM):
    """The "mean" rule with the Gaussian prior's exact Var[u | x_i] per frequency: its posterior
    mean is then E[x0 | x_i, y] exactly."""

    def __init__(self, prior, sched, sigma):
        super().__init__(prior, sched, sigma)
        self.weights = [0.0] * sched.num_steps

    def posterior_mean(self, u, problem, kernel, i):
        a, P = self.abar[i], self.prior.P
        var_u = P / 4 * (1 - a) / (a * P + 1 - a)
        step = torch.fft.irfft2(var_u * torch.fft.rfft2(self.direction(u, problem, kernel, i).double()), s=self.prior.size)
        return u + step.to(u.dtype)


def test_mean_rule_particle_mean_approaches_the_wiener_mean_in_few_steps():
    """The "mean" rule's DDIM step (η = 1) from E[x0 | x_i, y] keeps the particle mean on the Wiener
    mean (the step is linear in x_i), so at 10 and 20 steps the error falls with the particles to
    near zero; with the isotropic r̃² of natural images it still falls, to the floor of that
    approximation (docs/design.md §8)."""
    sigma = 0.05
    prior, _, k, y = _gaussian_problem(16, 1, sigma)
    for steps in (10, 20):
        sched = Schedule.make(1000, steps)
        exact = [_posterior_error(prior, y, k, sigma, ExactVarianceMean(prior, sched, sigma), sched, n, "mean")
                 for n in (1, 16, 256)]
        assert exact[0] > exact[1] > exact[2] and exact[2] < 0.15, (steps, exact)
    isotropic = [_posterior_error(prior, y, k, sigma, PiGDM(sched, "official", "mean", 1.0), sched, n, "mean") for n in (1, 16)]
    assert isotropic[0] > isotropic[1] and isotropic[1] < 1.0, isotropic


def test_mean_rule_takes_no_vjp_and_feeds_the_m_step_the_network_estimate():
    sched = Schedule.make(1000, 10)
    assert PiGDM(sched, "official", "mean").weights == [0.0] * 10
    seen = []
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    net = tiny_unet()
    with torch.no_grad():
        run_loop(net, sched, BlurProblem(y, torch.tensor([0.05])), PiGDM(sched, "official", "mean"), torch.ones(1, 1, 3, 3) / 9,
                 generator_noise(make_generators(0, 1, "cpu")), SamplerSpec(step_rule="mean"), particles=2,
                 mstep=lambda u, kernel, i: seen.append(u.requires_grad) or kernel)
    assert seen == [False] * 10  # no graph was built: no VJP


@pytest.mark.parametrize("method", ["dps", "fastem-dps", "diffem-dps"])
def test_mean_rule_is_refused_for_dps_methods_in_words(method):
    kernel = None if "-" in method else torch.ones(1, 1, 3, 3)
    with pytest.raises(InputError, match="step rule 'mean' needs ΠGDM guidance"):
        sample(method, tiny_unet(), torch.rand(1, 3, 16, 16), 0.05, kernel=kernel, steps=3, step_rule="mean")
    for preset in ("paper", "tuned", "few-step"):  # a preset's "mean" is refused when the spec is built
        with pytest.raises(InputError, match="step rule 'mean' needs ΠGDM guidance"):
            resolve(method, preset, step_rule="mean")
    assert resolve(method.replace("dps", "pigdm"), step_rule="mean").sampler.step_rule == "mean"


def test_start_runs_steps_network_calls_from_the_noised_observation():
    """``start`` < 1: exactly ``steps`` network calls (callbacks), on the tail of the steps/start
    respacing; ``start = 1`` is the plain sampler, bit for bit."""
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    calls, timesteps = [], []
    net = tiny_unet()

    def spy(x, t):
        timesteps.append(int(t[0]))
        return net(x, t)

    spy.cfg = getattr(net, "cfg", None)
    run = lambda **kw: sample("fastem-pigdm", spy, y, 0.05, steps=5,  # noqa: E731
                              mstep=MStepConfig(kernel_size=3, denoiser=IDENTITY_DENOISER, **BILINEAR),
                              callback=lambda u, k: calls.append(1), **kw)
    r = run(start=0.5, step_rule="mean")
    assert len(calls) == 5 and max(timesteps) < 500 and timesteps == sorted(timesteps, reverse=True)
    calls.clear(), timesteps.clear()
    full = run(start=1.0, step_rule="mean")
    assert len(calls) == 5 and max(timesteps) == 999
    assert torch.equal(full.image, run(step_rule="mean").image) and not torch.equal(full.image, r.image)


@pytest.mark.parametrize("options, message", [
    (dict(step_rule="rk4"), "unknown step_rule 'rk4'"),
    (dict(step_rule="ddim", eta=1.5), "eta must be a number in \\[0, 1\\]"),
    (dict(step_rule="ddim", eta=-0.1), "eta must be"),
    (dict(step_rule="ddim", steps=0), "steps must be an integer"),
    (dict(step_rule="mean", start=0.0), "start must be in \\(0, 1\\]"),
    (dict(step_rule="mean", start=1.5), "start must be a number in \\[0, 1\\]"),
    (dict(start=float("nan")), "start must be a number"),
])
def test_bad_step_options_are_input_errors(options, message):
    with pytest.raises(InputError, match=message):
        sample("pigdm", tiny_unet(), torch.rand(1, 3, 16, 16), 0.05, kernel=torch.ones(1, 1, 3, 3), **{"steps": 3, **options})
    with pytest.raises(InputError, match=message):
        build_restorer("fastem-pigdm", "cpu", **options)  # refused before any prior is loaded


@pytest.mark.parametrize("flags, message", [
    (["--step-rule", "heun"], "^fdem: error: unknown step_rule 'heun'"),  # the field, not the flag
    (["--step-rule", "ddim", "--eta", "2"], "^fdem: error: eta must be a number in \\[0, 1\\]"),
    (["--steps", "0"], "^fdem: error: steps must be an integer in \\[2, 1000\\], got 0"),
    (["--start", "0"], "start must be in \\(0, 1\\]"),
    (["--start", "2"], "^fdem: error: start must be a number in \\[0, 1\\]"),
    (["--method", "fastem-dps", "--step-rule", "mean"], "step rule 'mean' needs ΠGDM guidance"),
])
def test_cli_refuses_bad_step_options_in_one_line_with_exit_code_2(tmp_path, flags, message):
    argv = [sys.executable, "-c", "import sys; from fdem.cli import main; sys.exit(main(sys.argv[1:]))",
            "deblur", str(tmp_path / "none.png"), "--sigma", "5", "--out", str(tmp_path / "out"), *flags]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("method", ["dps", "pigdm", "fastem-dps", "fastem-pigdm", "diffem-pigdm"])
@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_every_guided_method_runs_with_ddim(method, eta):
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    kernel = None if "-" in method else torch.ones(1, 1, 5, 5)
    r = sample(method, tiny_unet(), y, 0.05, kernel=kernel, steps=4, em_iters=2, step_rule="ddim", eta=eta,
               mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR))
    assert r.image.shape == (1, 3, 16, 16) and torch.isfinite(r.image).all()
    ancestral = sample(method, tiny_unet(), y, 0.05, kernel=kernel, steps=4, em_iters=2,
                       mstep=MStepConfig(kernel_size=5, denoiser=IDENTITY_DENOISER, **BILINEAR))
    assert not torch.equal(r.image, ancestral.image)


def test_blind_dps_runs_with_ddim(priors):  # noqa: F811
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    restorer = build_restorer("blind-dps", "cpu", **priors, step_rule="ddim", eta=0.0)
    r = restorer.restore(y, 0.05, seed=1)
    assert torch.isfinite(r.image).all() and r.kernel.shape == (1, 1, 8, 8)
    assert restorer.params()["step_rule"] == "ddim"
    ancestral = build_restorer("blind-dps", "cpu", **priors).restore(y, 0.05, seed=1)
    assert not torch.equal(r.image, ancestral.image)


def test_speed_grid_times_step_variants_and_reports_the_ratio(tmp_path, capsys):
    import csv

    from fdem.cli import main
    from tests.test_speed import _speed_config

    variants = [{"method": "fastem-pigdm", "steps": 4, "step_rule": "ddpm"},
                {"method": "fastem-pigdm", "steps": 2, "step_rule": "ddim", "eta": 0.0}]
    config = _speed_config(tmp_path, batches=[1], precisions=["fp32"], step_variants=variants)
    main(["bench", "--config", config, "--methods", "fastem-pigdm", "--no-progress"])
    rows = list(csv.DictReader((tmp_path / "out" / "speed.csv").open()))
    assert [(r["steps"], r["step_rule"], r["variant"]) for r in rows] == [
        ("2", "ddpm", ""), ("4", "ddpm", "4 ddpm"), ("2", "ddim", "2 ddim η=0")]
    text = (tmp_path / "out" / "speed.md").read_text()
    assert "| 2 ddim η=0 |" in text and "speed-up over the first" in text
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--config", _speed_config(tmp_path, step_variants=[{"method": "fastem-pigdm", "step_rule": "x"}])])
    assert exit_info.value.code == 2 and "speed.yaml: unknown step_rule 'x'" in capsys.readouterr().err


def test_steps_config_parses():
    """configs/bench/steps.yaml: 40 rows of known methods and options (studies/fastem/steps_plot.py
    reads its output; tests/test_studies.py runs it)."""
    from pathlib import Path

    from fdem.benchmarks.module import parse_methods
    from fdem.benchmarks.run import BenchConfig
    from fdem.restorers import check_options

    cfg = BenchConfig.from_yaml(Path(__file__).parents[1] / "configs" / "bench" / "steps.yaml")
    specs = parse_methods(cfg.methods)
    assert len(specs) == 40 and cfg.data["images"] != "bundled-held-out"
    for spec in specs:
        check_options(spec.method, spec.options)


def test_the_acceptance_check_config_runs_the_grid_rows_it_is_pooled_with():
    """steps_check.yaml compares the grid's two acceptance rows (same labels and options, so --pool pairs
    them) on other problems: another kernel bank and other seeds."""
    from pathlib import Path

    from fdem.benchmarks.module import parse_methods
    from fdem.benchmarks.run import BenchConfig
    from fdem.restorers import check_options

    folder = Path(__file__).parents[1] / "configs" / "bench"
    check, grid = (BenchConfig.from_yaml(folder / name) for name in ("steps_check.yaml", "steps.yaml"))
    grid_specs = {spec.label: spec for spec in parse_methods(grid.methods)}
    for spec in parse_methods(check.methods):
        check_options(spec.method, spec.options)
        assert grid_specs[spec.label].options == spec.options and grid_specs[spec.label].method == spec.method
    assert check.data["kernel_seed"] != grid.data.get("kernel_seed", 0) and check.data["seed"] != grid.data["seed"]
