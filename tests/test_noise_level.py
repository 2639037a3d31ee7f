"""The noise level read from a blurry image (fdem deblur without --sigma): accurate on blurred
texture with white noise, blind to clipped pixels, refused where nothing is left to read."""

import pytest
import torch

from fdem.errors import InputError
from fdem.noise_level import chi2_mean_quantile, estimate_noise
from fdem.physics import blur


def blurred_texture(sigma: float, seed: int = 0, size: int = 192) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scene = torch.rand(1, 3, size, size, generator=g)
    kernel = torch.ones(1, 1, 7, 7) / 49
    y = 0.2 + 0.6 * blur(scene, kernel)
    return y + sigma * torch.randn(y.shape, generator=g)


@pytest.mark.parametrize("sigma255", [2, 5, 10, 20])
def test_the_estimate_is_within_ten_percent_on_blurred_texture(sigma255):
    estimate = float(estimate_noise(blurred_texture(sigma255 / 255, seed=sigma255))[0]) * 255
    assert estimate == pytest.approx(sigma255, rel=0.1)


def test_clipped_pixels_do_not_pull_the_estimate_down():
    y = blurred_texture(5 / 255)
    y[..., :, :96] = 1.0  # half the frame saturated: no noise there
    assert float(estimate_noise(y)[0]) * 255 == pytest.approx(5, rel=0.1)


def test_a_batch_is_estimated_image_by_image_and_deterministically():
    y = torch.cat([blurred_texture(2 / 255, 1), blurred_texture(10 / 255, 2)])
    first, again = estimate_noise(y), estimate_noise(y)
    assert torch.equal(first, again) and first[1] > 3 * first[0]


def test_the_chi_square_quantile_is_exact_enough():
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(200_000, 64, generator=g).square().mean(dim=1)
    assert chi2_mean_quantile(0.1, 64) == pytest.approx(float(draws.quantile(0.1)), abs=3e-3)


def test_an_all_saturated_or_tiny_image_is_refused_with_its_name():
    with pytest.raises(InputError, match="photo.png: too few unclipped pixels"):
        estimate_noise(torch.ones(1, 3, 128, 128), "photo.png")
    with pytest.raises(InputError, match="too few"):
        estimate_noise(torch.rand(1, 3, 20, 20))
