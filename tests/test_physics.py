"""Blur operator: adjointness, agreement with scipy's circular convolution, OTF round trips, the blur problem object."""

import numpy as np
import pytest
import scipy.ndimage
import torch

from fdem.errors import InputError
from fdem.kernel_ops import normalize_kernel
from fdem.physics import add_noise, blur, blur_adjoint, otf2psf, psf2otf, tikhonov_deconv, wiener_deconv


@pytest.mark.parametrize("k", [3, 4, 7, 8, 15])
def test_adjoint_identity(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(2, 3, 20, 17, generator=g, dtype=torch.float64)
    y = torch.randn(2, 3, 20, 17, generator=g, dtype=torch.float64)
    ker = torch.rand(2, 1, k, k, generator=g, dtype=torch.float64)
    lhs = (blur(x, ker) * y).sum()
    rhs = (x * blur_adjoint(y, ker)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-12)


@pytest.mark.parametrize("k", [3, 4, 5, 8, 9])
def test_blur_matches_scipy_wrap(k):
    rng = np.random.default_rng(k)
    img = rng.random((16, 19))
    ker = rng.random((k, k))
    ours = blur(torch.from_numpy(img)[None, None], torch.from_numpy(ker)[None, None])[0, 0].numpy()
    ref = scipy.ndimage.convolve(img, ker, mode="wrap")
    np.testing.assert_allclose(ours, ref, atol=1e-12)


def test_one_kernel_per_image():
    x = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    k = torch.rand(2, 1, 5, 5, dtype=torch.float64)
    both = blur(x, k)
    for i in range(2):
        assert torch.allclose(both[i : i + 1], blur(x[i : i + 1], k[i : i + 1]))


@pytest.mark.parametrize("k", [4, 5])
def test_otf_round_trip(k):
    ker = torch.rand(3, 1, k, k, dtype=torch.float64)
    back = otf2psf(psf2otf(ker, (12, 13)), (12, 13), k)
    assert torch.allclose(back, ker, atol=1e-12)


def test_dirac_blur_is_identity():
    x = torch.rand(1, 3, 10, 10, dtype=torch.float64)
    d = torch.zeros(1, 1, 6, 6, dtype=torch.float64)
    d[..., 3, 3] = 1
    assert torch.allclose(blur(x, d), x)


def test_kernel_larger_than_image_is_rejected():
    with pytest.raises(InputError, match="larger than the image"):
        blur(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 9, 9))


def test_negative_sigma_is_rejected():
    with pytest.raises(InputError, match="sigma"):
        add_noise(torch.rand(1, 1, 4, 4), -0.1)


def test_noise_is_seeded_and_per_image():
    y = torch.zeros(2, 1, 64, 64)
    a = add_noise(y, torch.tensor([0.1, 0.0]), generator=torch.Generator().manual_seed(1))
    b = add_noise(y, torch.tensor([0.1, 0.0]), generator=torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert abs(a[0].std().item() - 0.1) < 0.01 and a[1].abs().max() == 0


def test_deconvolution_inverts_noiseless_blur():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g, dtype=torch.float64)
    k = torch.tensor([[0.1, 0.2, 0.1], [0.2, 0.8, 0.2], [0.1, 0.2, 0.1]], dtype=torch.float64)[None, None]
    k = k / k.sum()
    y = blur(x, k)
    assert (tikhonov_deconv(y, k, 1e-10, prior="identity") - x).abs().max() < 1e-6
    # a piecewise-constant image blurred by a 7x7 box: the Wiener estimate is closer than the data
    blocks = torch.rand(1, 3, 8, 8, generator=g, dtype=torch.float64).repeat_interleave(8, -1).repeat_interleave(8, -2)
    box = torch.full((1, 1, 7, 7), 1 / 49, dtype=torch.float64)
    noisy = add_noise(blur(blocks, box), 0.02, generator=g)
    restored = wiener_deconv(noisy, box, 0.02)
    assert ((restored - blocks) ** 2).mean() < 0.7 * ((noisy - blocks) ** 2).mean()


def test_blur_problem_operators_match_blur_and_cache_the_otf(monkeypatch):
    import fdem.problem
    from fdem.problem import BlurProblem

    g = torch.Generator().manual_seed(7)
    y = torch.rand(2, 3, 12, 10, generator=g, dtype=torch.float64)
    u = torch.rand(2, 4, 3, 12, 10, generator=g, dtype=torch.float64)
    k = normalize_kernel(torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64))
    calls = []
    monkeypatch.setattr(fdem.problem, "psf2otf", lambda *a: calls.append(1) or psf2otf(*a))
    problem = BlurProblem(y, torch.tensor([0.1, 0.2]))
    assert torch.allclose(problem.forward(u[:, 0], k), blur(u[:, 0], k), atol=1e-12)
    assert torch.allclose(problem.forward(u, k)[:, 2], blur(u[:, 2], k), atol=1e-12)
    residual = problem.residual_spectrum(u, k)
    assert torch.allclose(problem.image(residual)[:, 1], y - blur(u[:, 1], k), atol=1e-12)
    assert torch.allclose(problem.adjoint(torch.fft.rfft2(y), k), blur_adjoint(y, k), atol=1e-12)
    assert len(calls) == 1  # one OTF for the one kernel tensor
    problem.otf(k.clone())
    assert len(calls) == 2  # a new kernel tensor: recomputed
    assert torch.equal(problem.y_hat, torch.fft.rfft2(y)) and problem.sigma.shape == (2,)


def test_blur_problem_rejects_bad_input():
    from fdem.problem import BlurProblem

    with pytest.raises(InputError, match="y must be"):
        BlurProblem(torch.rand(3, 8, 8), 0.1)
    with pytest.raises(InputError, match="sigma"):
        BlurProblem(torch.rand(1, 3, 8, 8), torch.tensor([-0.1]))
    with pytest.raises(InputError, match="sigma"):
        BlurProblem(torch.rand(1, 3, 8, 8), -0.1)
