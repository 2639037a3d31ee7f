"""The padded margin as missing data (``border="impute"``): the problem refills exactly the
unobserved pixels with the model's prediction, a full mask changes nothing, and ``fdem deblur`` runs it."""

import pytest
import torch

from fdem.errors import InputError
from fdem.mstep import MStepConfig
from fdem.priors import Prior
from fdem.problem import BlurProblem
from fdem.restorers import build_restorer
from fdem.sampling.padded import crop_mask
from fdem.cli import main
from tests.helpers import sample
from tests.test_deblur_cli import files  # noqa: F401  (the CLI fixture)
from tests.test_sampling import tiny_unet


def test_impute_refills_only_the_unobserved_pixels_with_the_blurred_particle_mean():
    g = torch.Generator().manual_seed(0)
    y, u = torch.rand(2, 3, 12, 12, generator=g), torch.rand(2, 2, 3, 12, 12, generator=g)
    kernel = torch.rand(2, 1, 5, 5, generator=g)
    kernel = kernel / kernel.sum(dim=(-2, -1), keepdim=True)
    observed = crop_mask(y, (2, 3), (8, 7))
    problem = BlurProblem(y, 0.05, observed)
    problem.impute(u, kernel)
    predicted = problem.forward(u.mean(dim=1), kernel)
    inside = observed.bool().expand_as(y)
    assert torch.equal(problem.y[inside], y[inside])
    assert torch.allclose(problem.y[~inside], predicted[~inside], atol=1e-6)
    assert not torch.allclose(problem.y[~inside], y[~inside])  # the margin did change
    assert torch.allclose(problem.y_hat, torch.fft.rfft2(problem.y))
    assert problem.residual_spectrum(u.mean(dim=1, keepdim=True), kernel).shape == (2, 1, 3, 12, 7)


def test_without_a_mask_impute_changes_nothing():
    y = torch.rand(1, 3, 8, 8)
    problem = BlurProblem(y, 0.05)
    spectrum = problem.y_hat
    problem.impute(torch.rand(1, 1, 3, 8, 8), torch.full((1, 1, 3, 3), 1 / 9))
    assert problem.y is y and problem.y_hat is spectrum


def test_a_mask_of_the_wrong_shape_is_refused():
    with pytest.raises(InputError, match="observed must be"):
        BlurProblem(torch.rand(1, 3, 8, 8), 0.05, torch.ones(1, 1, 8, 9))


@pytest.mark.parametrize("method, step_rule", [("fastem-pigdm", "ddim"), ("fastem-pigdm", "mean"), ("pigdm", "ddpm")])
def test_a_mask_that_observes_everything_gives_the_same_run(method, step_rule):
    net = tiny_unet()
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    kernel = None if method.startswith("fastem") else torch.full((1, 1, 5, 5), 1 / 25)
    options = dict(kernel=kernel, mstep=MStepConfig(kernel_size=5, lam=0, recenter="bilinear"), steps=4, seed=1,
                   step_rule=step_rule, start=0.5)
    plain = sample(method, net, y, 0.05, **options)
    masked = sample(method, net, y, 0.05, observed=torch.ones(1, 1, 16, 16), **options)
    assert torch.equal(plain.image, masked.image)


def test_an_imputed_margin_changes_the_run_but_not_the_output_size():
    net = tiny_unet()
    y = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(4))
    options = dict(prior=Prior.of(net), preset="tuned", kernel_size=5, lam=0, steps=4)  # margin: the radius, 2
    smooth = build_restorer("fastem-pigdm", "cpu", border="smooth", **options).restore(y, 0.05, seed=1)
    imputed = build_restorer("fastem-pigdm", "cpu", border="impute", **options).restore(y, 0.05, seed=1)
    assert imputed.image.shape == y.shape and imputed.kernel.shape == (1, 1, 5, 5)
    assert not torch.allclose(smooth.image, imputed.image)


def test_deblur_with_the_imputed_border_writes_a_restored_image_of_the_photo_size(files, tmp_path):  # noqa: F811
    from PIL import Image

    main(["deblur", str(files / "gray16.png"), "--sigma", "5", "--prior", str(files / "prior.pt"),
          "--prior-config", str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--border", "impute",
          "--kernel-denoiser", str(files / "denoiser.pt"), "--out", str(tmp_path / "out")])
    assert Image.open(tmp_path / "out" / "gray16_restored.png").size == (45, 37)
