"""Restarts: K chains per image, the one of smallest data misfit kept (fdem.sampling.restarts)."""

import pytest
import torch

from fdem.cli import main
from fdem.errors import InputError
from fdem.mstep import MStepConfig
from fdem.physics import blur
from fdem.problem import BlurProblem
from fdem.sampling.padded import crop_mask
from fdem.sampling.restarts import RESTART_SEED_STRIDE, chain_seeds, repeat_problem
from tests.helpers import sample
from tests.test_deblur_cli import _run, files  # noqa: F401  (the CLI fixture)
from tests.test_sampling import tiny_unet

OPTIONS = dict(mstep=MStepConfig(kernel_size=5, lam=0, recenter="bilinear"), steps=3, step_rule="ddim", start=0.5)


def test_the_misfit_is_the_mean_squared_residual_over_the_measured_pixels():
    g = torch.Generator().manual_seed(0)
    y, u = torch.rand(2, 3, 10, 10, generator=g), torch.rand(2, 3, 10, 10, generator=g)
    kernel = torch.full((1, 1, 3, 3), 1 / 9)
    residual = (y - blur(u, kernel)) ** 2
    assert torch.allclose(BlurProblem(y, 0.05).misfit(u, kernel), residual.mean(dim=(1, 2, 3)), atol=1e-6)
    mask = crop_mask(y, (1, 2), (6, 5))
    problem = BlurProblem(y, 0.05, mask)
    problem.impute(torch.rand(2, 1, 3, 10, 10, generator=g), kernel)  # the refilled margin must not count
    inside = residual[:, :, 1:7, 2:7]
    assert torch.allclose(problem.misfit(u, kernel), inside.mean(dim=(1, 2, 3)), atol=1e-6)


def test_chains_are_seeded_chain_major_and_chain_zero_is_the_plain_run():
    assert chain_seeds([7, 9], 1) == [7, 9]
    assert chain_seeds([7, 9], 2) == [7, 9, 7 + RESTART_SEED_STRIDE, 9 + RESTART_SEED_STRIDE]
    y = torch.arange(2.0).reshape(2, 1, 1, 1).expand(2, 3, 4, 4).contiguous()  # image b is all b
    shared = torch.ones(1, 1, 4, 4)
    shared[..., 0, 0] = 0
    problem = BlurProblem(y, torch.tensor([0.1, 0.2]), shared)
    problem.impute(torch.full((2, 1, 3, 4, 4), 7.0), torch.full((1, 1, 3, 3), 1 / 9))  # chains start from the measured y
    repeated = repeat_problem(problem, 3)
    assert repeated.y.shape == (6, 3, 4, 4) and repeated.y[:, 0, 1, 1].tolist() == [0, 1, 0, 1, 0, 1]
    assert repeated.y[:, 0, 0, 0].tolist() == [0, 1, 0, 1, 0, 1]  # not the imputed 7
    assert repeated.sigma.tolist() == pytest.approx([0.1, 0.2] * 3)
    assert repeated.observed.shape == (1, 1, 4, 4) and torch.equal(repeated.observed, shared)  # one mask for all
    per_image = torch.stack([shared[0], 1 - shared[0]])
    masks = repeat_problem(BlurProblem(y, 0.1, per_image), 3).observed
    assert masks.shape == (6, 1, 4, 4) and all(torch.equal(masks[j * 2 + b], per_image[b]) for j in range(3) for b in range(2))


@pytest.mark.parametrize("method", ["fastem-pigdm", "pigdm"])
def test_restarts_keep_the_chain_that_fits_y_best(method):
    net = tiny_unet()
    g = torch.Generator().manual_seed(3)
    y = torch.rand(2, 3, 16, 16, generator=g)
    kernel = None if method.startswith("fastem") else torch.full((1, 1, 5, 5), 1 / 25)
    best = sample(method, net, y, 0.05, kernel=kernel, seed=[4, 11], restarts=3, **OPTIONS)
    chains = [sample(method, net, y, 0.05, kernel=kernel, seed=[4 + j * RESTART_SEED_STRIDE, 11 + j * RESTART_SEED_STRIDE],
                         **OPTIONS) for j in range(3)]
    problem = BlurProblem(y, 0.05)
    misfit = torch.stack([problem.misfit(c.image, c.kernel if kernel is None else kernel) for c in chains])  # (K, B)
    assert not torch.allclose(misfit[0], misfit[1])  # the chains do differ
    for b, j in enumerate(misfit.argmin(dim=0).tolist()):
        assert torch.allclose(best.image[b], chains[j].image[b], atol=1e-5)
        if kernel is None:
            assert torch.allclose(best.kernel[b], chains[j].kernel[b], atol=1e-6)
    assert best.image.shape == y.shape and best.particles.shape == (2, 1, 3, 16, 16)


def test_one_restart_is_the_plain_run_and_the_trace_follows_the_chosen_chain():
    net = tiny_unet()
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    plain = sample("fastem-pigdm", net, y, 0.05, seed=2, **OPTIONS)
    assert torch.equal(sample("fastem-pigdm", net, y, 0.05, seed=2, restarts=1, **OPTIONS).image, plain.image)
    traced = sample("fastem-pigdm", net, y, 0.05, seed=2, restarts=2, trace_every=1, **OPTIONS)
    chains = [sample("fastem-pigdm", net, y, 0.05, seed=2 + j * RESTART_SEED_STRIDE, trace_every=1, **OPTIONS)
              for j in range(2)]
    chosen = next(c for c in chains if torch.allclose(c.image, traced.image, atol=1e-5))
    assert traced.trace.x0.shape == chosen.trace.x0.shape and traced.trace.kernel.shape == chosen.trace.kernel.shape
    assert torch.allclose(traced.trace.x0, chosen.trace.x0, atol=1e-5)
    assert torch.allclose(traced.trace.kernel, chosen.trace.kernel, atol=1e-6)


@pytest.mark.parametrize("method", ["fastem-pigdm", "pigdm"])
def test_combine_mean_keeps_the_chains_mean_image_and_kernel(method):
    net = tiny_unet()
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(6))
    kernel = None if method.startswith("fastem") else torch.full((1, 1, 5, 5), 1 / 25)
    mean = sample(method, net, y, 0.05, kernel=kernel, seed=[4, 11], restarts=2, combine="mean", trace_every=1, **OPTIONS)
    chains = [sample(method, net, y, 0.05, kernel=kernel, seed=[4 + j * RESTART_SEED_STRIDE, 11 + j * RESTART_SEED_STRIDE],
                     trace_every=1, **OPTIONS) for j in range(2)]
    assert not torch.allclose(chains[0].image, chains[1].image, atol=1e-3)  # the chains do differ
    assert torch.allclose(mean.image, (chains[0].image + chains[1].image) / 2, atol=1e-5)
    assert mean.particles.shape == (2, 2, 3, 16, 16)
    assert torch.allclose(mean.particles[:, 1], chains[1].particles[:, 0], atol=1e-5)
    assert torch.allclose(mean.trace.x0, (chains[0].trace.x0 + chains[1].trace.x0) / 2, atol=1e-5)
    if kernel is None:
        assert torch.allclose(mean.kernel, (chains[0].kernel + chains[1].kernel) / 2, atol=1e-6)
        assert torch.allclose(mean.kernel.sum(dim=(-2, -1)), torch.ones(2, 1), atol=1e-5)
    else:
        assert mean.kernel is None


def test_a_bad_combine_is_refused_and_only_a_mean_is_recorded():
    from fdem.presets import resolve

    with pytest.raises(InputError, match="unknown combine 'median': choose one of best, mean, natural"):
        resolve("fastem-pigdm", "photo", combine="median")
    assert "combine" not in resolve("fastem-pigdm", "photo").options()
    assert resolve("pigdm", "photo", combine="mean").options()["combine"] == "mean"
    assert resolve("fastem-pigdm", "photo").options(full=True)["combine"] == "best"


@pytest.mark.parametrize("restarts", [0, -1, 1.5, True])
def test_bad_restarts_are_refused(restarts):
    with pytest.raises(InputError, match="restarts must be an integer >= 1"):
        sample("fastem-pigdm", tiny_unet(), torch.rand(1, 3, 16, 16), 0.05, restarts=restarts, **OPTIONS)


def test_deblur_takes_restarts_and_refuses_a_bad_count(files, tmp_path, capsys):  # noqa: F811
    common = ["deblur", str(files / "gray16.png"), "--sigma", "5", "--prior", str(files / "prior.pt"),
              "--prior-config", str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2",
              "--kernel-denoiser", str(files / "denoiser.pt")]
    main(common + ["--restarts", "2", "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / "gray16_restored.png").is_file()
    assert "of 2 chains side by side" in capsys.readouterr().out
    code, err = _run(common + ["--restarts", "0", "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "restarts must be an integer >= 1, got 0" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()
    code, err = _run(common + ["--restarts", "2", "--combine", "median", "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "unknown combine 'median': choose one of best, mean, natural" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_the_memory_and_time_plans_count_every_chain():
    from fdem.memory import restorer_plan
    from fdem.restorers import build_restorer
    from fdem.sampling.step_plan import plan_restoration

    restorer = build_restorer("fastem-pigdm", "cpu", steps=2, particles=2, restarts=3)
    assert restorer.chains == 6 and restorer_plan(restorer, 64, 64).batch == 6
    assert restorer.total_steps() == 2  # callbacks per batch: the chains step together
    assert "2 steps of 6 chains side by side" in plan_restoration(restorer, 64, 64, timed=False).line("x")
    assert build_restorer("fastem-pigdm", "cpu", steps=2).params()["restarts"] == 1  # every row names its restarts
    assert build_restorer("fastem-pigdm", "cpu", preset="demo").params()["restarts"] == 3
    assert build_restorer("fastem-pigdm", "cpu", preset="demo").chains == 3
    assert build_restorer("fastem-pigdm", "cpu", steps=2, restarts=3).params()["restarts"] == 3


def test_combine_natural_keeps_the_chain_of_smallest_denoising_loss():
    from fdem.diffusion import ScheduleSpec
    from fdem.sampling.naturalness import denoising_loss

    net = tiny_unet()
    y = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7))
    natural = sample("fastem-pigdm", net, y, 0.05, seed=[3, 8], restarts=2, combine="natural", **OPTIONS)
    chains = [sample("fastem-pigdm", net, y, 0.05, seed=[3 + j * RESTART_SEED_STRIDE, 8 + j * RESTART_SEED_STRIDE],
                     **OPTIONS) for j in range(2)]
    schedule = ScheduleSpec().build()
    loss = torch.stack([denoising_loss(net, schedule, c.image) for c in chains])  # (K, B)
    assert not torch.allclose(loss[0], loss[1])
    for b, j in enumerate(loss.argmin(dim=0).tolist()):
        assert torch.allclose(natural.image[b], chains[j].image[b], atol=1e-5)
        assert torch.allclose(natural.kernel[b], chains[j].kernel[b], atol=1e-6)


def test_the_denoising_loss_is_per_image_seeded_and_lower_for_a_sample_of_the_prior():
    """With the exact Gaussian prior's network, a draw of that prior scores lower than white noise of the
    same pixel variance: the loss measures how natural an image is to the prior."""
    from fdem.diffusion import ScheduleSpec
    from fdem.sampling.naturalness import denoising_loss
    from tests.test_sampling import GaussianPrior

    schedule = ScheduleSpec().build()
    prior = GaussianPrior(16)
    g = torch.Generator().manual_seed(9)
    draw = prior.sample((1, 3, 16, 16), g).float()
    white = torch.randn(1, 3, 16, 16, generator=g) * draw.std()
    images = (torch.cat([draw, white]) + 1) / 2
    loss = denoising_loss(prior, schedule, images)
    assert loss.shape == (2,) and loss[0] < 0.8 * loss[1]
    assert torch.allclose(loss[1:], denoising_loss(prior, schedule, images[1:]), atol=1e-6)
    assert torch.equal(loss, denoising_loss(prior, schedule, images))
