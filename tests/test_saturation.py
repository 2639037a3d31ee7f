"""Saturated pixels as missing data: the mask, the point-light scenes of the benchmark, and the mask
reaching the data term of the sampler (one mask with the imputed margin)."""

import pytest
import torch

from fdem.errors import InputError
from fdem.presets import CanvasSpec
from fdem.saturation import add_point_lights, observed_mask, saturation_mask
from fdem.sampling.padded import padded_problem


def test_the_mask_leaves_out_a_kernel_box_around_every_clipped_pixel():
    y = torch.full((1, 3, 40, 40), 0.5)
    y[0, 1, 20, 10] = 1.0  # one channel clipped
    mask = observed_mask(y, 0.98, 7)
    assert mask.shape == (1, 1, 40, 40)
    assert mask[0, 0, 17:24, 7:14].sum() == 0 and mask.sum() == 40 * 40 - 49


def test_an_image_with_nothing_observed_is_refused_with_its_name():
    with pytest.raises(InputError, match="night.jpg: every pixel is saturated"):
        observed_mask(torch.ones(1, 3, 16, 16), 0.98, 5, "night.jpg")


def test_the_level_is_checked_where_the_canvas_spec_is_built():
    with pytest.raises(InputError, match="saturation"):
        CanvasSpec(saturation=0.0)
    with pytest.raises(InputError, match="saturation"):
        CanvasSpec(saturation=1.5)
    assert CanvasSpec(saturation=1).saturation == 1.0
    with pytest.raises(InputError, match="saturation_reach"):
        CanvasSpec(saturation=0.98, saturation_reach=0)


def test_the_canvas_mask_is_the_clipped_pixels_alone_by_default_and_its_box_when_set():
    y = torch.full((1, 3, 20, 20), 0.5)
    y[0, 0, 8, 8] = 1.0
    assert saturation_mask(CanvasSpec(), y) is None
    assert saturation_mask(CanvasSpec(saturation=0.98), y).sum() == 20 * 20 - 1
    assert saturation_mask(CanvasSpec(saturation=0.98, saturation_reach=5), y)[0, 0, 6:11, 6:11].sum() == 0


def test_point_lights_are_far_above_one_and_inside_the_margin():
    scene = torch.zeros(3, 64, 64)
    lit = add_point_lights(scene, 5, margin=10, generator=torch.Generator().manual_seed(0))
    assert lit.max() > 4
    assert lit[:, :8].max() < 0.05 and lit[:, :, -8:].max() < 0.05  # spots of 0.7 px, 10 px inside
    assert torch.equal(add_point_lights(scene, 0, 10, torch.Generator()), scene)


@pytest.mark.parametrize("border", ["impute", "circular"])
def test_the_problem_marks_clipped_pixels_and_the_margin_unobserved(border):
    y = torch.full((2, 3, 32, 32), 0.4)
    y[1, :, 5, 5] = 1.0
    problem, offset = padded_problem(y, 0.02, border, 5, 8, observed_mask(y, 0.98, 5))
    window = problem.observed[..., offset[0]:offset[0] + 32, offset[1]:offset[1] + 32]
    assert window[0].min() == 1 and window[1, 0, 3:8, 3:8].sum() == 0 and window[1].sum() == 32 * 32 - 25
    if border == "impute":
        assert problem.observed.sum() == window.sum()  # the margin unobserved too
    plain, _ = padded_problem(y, 0.02, border, 5, 8)
    assert (plain.observed is None) == (border == "circular")


def test_a_restoration_without_clipped_pixels_is_unchanged_by_the_mask():
    from fdem.priors import Prior
    from fdem.restorers import build_restorer
    from tests.test_sampling import tiny_unet

    y = 0.2 + 0.5 * torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    options = dict(prior=Prior.of(tiny_unet()), preset="photo", kernel_size=5, lam=0, steps=3)
    plain, masked = (build_restorer("fastem-pigdm", "cpu", saturation=s, **options).restore(y, 0.05, seed=2)
                     for s in (None, 0.98))
    assert torch.equal(plain.image, masked.image) and torch.equal(plain.kernel, masked.kernel)
    y[..., 10, 10] = 1.0
    clipped = build_restorer("fastem-pigdm", "cpu", saturation=0.98, **options).restore(y, 0.05, seed=2)
    assert not torch.equal(clipped.kernel, plain.kernel)
