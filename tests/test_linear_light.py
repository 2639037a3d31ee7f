"""Linear light: the sRGB curve and its inverse, the noise level carried through it, the option reaching
the sampler, and benchmark scenes blurred in linear light."""

import pytest
import torch

from fdem.linear_light import linear_sigma, to_linear, to_srgb


def test_the_curves_are_inverse_and_match_known_values():
    x = torch.linspace(0, 1, 1001)
    assert torch.allclose(to_srgb(to_linear(x)), x, atol=1e-5)
    assert float(to_linear(torch.tensor(0.5))) == pytest.approx(0.21404, abs=1e-4)  # mid grey is 21 % of the light
    assert float(to_srgb(torch.tensor(0.18))) == pytest.approx(0.46135, abs=1e-4)


def test_the_noise_level_follows_the_slope_of_the_curve():
    dark, bright = torch.full((1, 3, 8, 8), 0.02), torch.full((1, 3, 8, 8), 0.9)
    sigma = torch.tensor([0.02, 0.02])
    levels = linear_sigma(torch.cat([dark, bright]), sigma)
    assert levels[0] == pytest.approx(0.02 / 12.92, rel=1e-4) and levels[1] > 5 * levels[0]
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 64, 64, generator=g) * 0.8 + 0.1
    noisy = y + 1e-3 * torch.randn(y.shape, generator=g)
    measured = (to_linear(noisy) - to_linear(y)).std()
    assert float(linear_sigma(y, 1e-3)[0]) == pytest.approx(float(measured), rel=0.05)


def test_the_option_runs_the_sampler_on_light_and_encodes_the_result():
    from fdem.priors import Prior
    from fdem.restorers import build_restorer
    from tests.test_sampling import tiny_unet

    y = 0.2 + 0.6 * torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    options = dict(prior=Prior.of(tiny_unet()), preset="photo", kernel_size=5, lam=0, steps=3)
    plain = build_restorer("fastem-pigdm", "cpu", **options).restore(y, 0.02, seed=0)
    light = build_restorer("fastem-pigdm", "cpu", linear_light=True, **options).restore(y, 0.02, seed=0)
    assert light.image.shape == y.shape and 0 <= float(light.image.min()) and float(light.image.max()) <= 1
    assert not torch.allclose(plain.image, light.image)


def test_benchmark_scenes_blurred_in_linear_light_differ_where_the_scene_has_contrast(tmp_path):
    from fdem.datamodules.blur_benchmark import BlurBenchmarkDataModule

    samples = []
    for linear in (False, True):
        dm = BlurBenchmarkDataModule(images="bundled", num_images=1, size=64, sigmas=[0], kernel_size=9, blur="scene",
                                     linear_light=linear)
        dm.setup("predict")
        samples.append(dm.dataset[0])
    assert torch.equal(samples[0]["sharp"], samples[1]["sharp"])
    difference = (samples[0]["y"] - samples[1]["y"]).abs()
    assert difference.max() > 0.01 and samples[1]["y"].max() <= 1
