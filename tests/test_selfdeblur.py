"""Self-Deblur (Ren et al., CVPR 2020): generators, forward model, alignment and the fitting loop, on tiny problems."""

import pytest
import torch

from fdem.baselines.selfdeblur import (
    SelfDeblurRestorer,
    align,
    rgb_to_ycbcr,
    selfdeblur,
    ssim,
    valid_blur,
    ycbcr_to_rgb,
)
from fdem.errors import InputError
from fdem.kernel_ops import center_of_mass
from fdem.nets.dip import DownBlock, KernelMLP, NonLocalBlock, SkipGenerator, UpBlock
from fdem.physics import blur
from fdem.restorer_base import Restoration
from fdem.restorers import build_restorer

TINY = {"channels": 16, "skip_channels": 4, "kernel_hidden": 64}


def _blocky(size: int, channels: int, seed: int) -> torch.Tensor:
    """A piecewise-constant image (4x4 blocks), easy to fit for a small generator."""
    coarse = torch.rand(1, channels, size // 4, size // 4, generator=torch.Generator().manual_seed(seed))
    return coarse.repeat_interleave(4, -1).repeat_interleave(4, -2)


def _bar_kernel() -> torch.Tensor:
    kernel = torch.zeros(1, 1, 5, 5)
    kernel[0, 0, 2, 1:4] = 1 / 3
    return kernel


@pytest.fixture(scope="module")
def fitted():
    y = blur(_blocky(32, 3, 0), _bar_kernel())
    return y, selfdeblur(y, 5, iters=60, seed=0, **TINY)


def test_loss_decreases_and_kernel_on_simplex(fitted):
    y, (image, kernel, losses) = fitted
    assert losses.shape == (1, 60)
    assert losses[0, -6:].mean() < 0.5 * losses[0, :6].mean(), losses[0]
    assert image.shape == y.shape and 0 <= image.min() and image.max() <= 1
    assert kernel.shape == (1, 1, 5, 5) and kernel.min() >= 0
    assert torch.allclose(kernel.sum(dim=(-2, -1)), torch.ones(1, 1), atol=1e-5)
    assert torch.allclose(center_of_mass(kernel), torch.tensor([[2.0, 2.0]]), atol=0.05)  # re-centred


def test_full_image_generator_architecture():
    net = SkipGenerator()
    assert net.scales == 5 and len(net.skip) == len(net.up) == 5
    for i, block in enumerate(net.down):
        assert isinstance(block, DownBlock)
        assert block.reduce[0][-1].out_channels == 128 and block.reduce[0][-1].stride == (2, 2)
        assert block.refine[0][-1].out_channels == 128
        assert isinstance(block.nonlocal_block, NonLocalBlock) == (i >= 2)
    assert [s[0][-1].out_channels for s in net.skip] == [16] * 5
    assert all(isinstance(u, UpBlock) and u.fuse[0][-1].in_channels == 144 and u.mix[0][-1].out_channels == 128
               for u in net.up)
    assert net.down[0].reduce[0][-1].in_channels == 8 and net.head.out_channels == 1
    z = torch.rand(1, 8, 45, 38)
    out = net(z)
    assert out.shape == (1, 1, 45, 38) and 0 < out.min() and out.max() < 1


def test_kernel_generator_is_a_softmax_mlp():
    net = KernelMLP(7)
    assert [m.out_features for m in net.net if isinstance(m, torch.nn.Linear)] == [1000, 49]
    assert net.net[0].in_features == 200 and isinstance(net.net[1], torch.nn.ReLU6)
    kernel = net(torch.rand(200))
    assert kernel.shape == (1, 1, 7, 7) and kernel.min() > 0
    assert torch.allclose(kernel.sum(), torch.tensor(1.0), atol=1e-6)


def test_nonlocal_block_starts_as_identity_and_handles_one_pixel():
    block = NonLocalBlock(8)
    for shape in [(1, 8, 5, 6), (1, 8, 1, 2)]:
        x = torch.randn(shape)
        assert torch.allclose(block(x), x)


def _circular_pad(x: torch.Tensor, k: int) -> torch.Tensor:
    before, after = k - 1 - k // 2, k // 2
    return torch.nn.functional.pad(x, (before, after, before, after), mode="circular")


@pytest.mark.parametrize("k", [5, 6])
def test_valid_blur_matches_circular_blur_on_padded_image(k):
    g = torch.Generator().manual_seed(1)
    x, kernel = torch.rand(1, 1, 12, 10, generator=g), torch.rand(1, 1, k, k, generator=g)
    assert torch.allclose(valid_blur(_circular_pad(x, k), kernel), blur(x, kernel), atol=1e-5)


def test_align_undoes_the_shift_ambiguity():
    """A kernel off-centre by d paired with the image shifted by −d gives the same blur; align recovers x."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(1, 1, 12, 10, generator=g)
    kernel = torch.zeros(1, 1, 7, 7)
    kernel[0, 0, 3, 2:5] = 1 / 3
    shifted = torch.roll(kernel, (1, -2), dims=(-2, -1))
    moved = torch.roll(x, (-1, 2), dims=(-2, -1))
    generated = _circular_pad(moved, 7)
    assert torch.allclose(valid_blur(generated, shifted), blur(x, kernel), atol=1e-5)
    image, centred = align(generated, shifted, (12, 10))
    assert torch.allclose(image, x, atol=1e-5) and torch.allclose(centred, kernel, atol=1e-6)


def test_colour_round_trip_and_ssim():
    rgb = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(ycbcr_to_rgb(rgb_to_ycbcr(rgb)), rgb, atol=1e-5)
    assert torch.allclose(rgb_to_ycbcr(rgb)[:, 0], 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])
    assert torch.allclose(ssim(rgb[:1, :1], rgb[:1, :1]), torch.tensor(1.0))
    assert ssim(rgb[:1, :1], rgb[1:, :1]) < 0.5


def test_restorer_batch_seeds_and_callback():
    restorer = build_restorer("selfdeblur", kernel_size=5, iters=4, **TINY)
    assert isinstance(restorer, SelfDeblurRestorer) and restorer.total_steps() == 4
    assert restorer.params()["channels"] == 16 and restorer.params()["kernel_size"] == 5
    y = torch.cat([blur(_blocky(32, 1, 4), _bar_kernel()), blur(_blocky(32, 1, 5), _bar_kernel())])
    calls = []
    result = restorer.restore(y, 0.0, seed=7, callback=lambda: calls.append(1))
    assert isinstance(result, Restoration) and len(calls) == 4
    assert result.image.shape == y.shape and result.kernel.shape == (2, 1, 5, 5)
    again = selfdeblur(y[1:], 5, iters=4, seed=8, **TINY)
    assert torch.allclose(result.image[1:], again[0], atol=1e-6)
    assert torch.allclose(result.kernel[1:], again[1], atol=1e-6)
    other = selfdeblur(y[1:], 5, iters=4, seed=9, **TINY)
    assert not torch.allclose(other[1], again[1])


def test_runs_under_inference_mode():
    with torch.inference_mode():
        y = blur(_blocky(32, 3, 6), _bar_kernel())
        image, kernel, losses = selfdeblur(y, 5, iters=2, **TINY)
    assert kernel.shape == (1, 1, 5, 5)
    assert image.shape == y.shape and torch.isfinite(losses).all()


@pytest.mark.parametrize(
    "shape, kernel_size, options",
    [
        ((1, 3, 32, 32), 40, {}),
        ((1, 3, 32, 32), 5, {"iters": 0}),
        ((1, 3, 32, 32), 2, {}),
        ((1, 2, 32, 32), 5, {}),
        ((1, 3, 8, 8), 3, {}),  # too small for five scales
        ((1, 3, 32, 32), 5, {"lr_image": -1.0}),
        ((1, 3, 32, 32), 5, {"no_such_option": 1}),
    ],
)
def test_bad_input_raises(shape, kernel_size, options):
    with pytest.raises(InputError):
        selfdeblur(torch.rand(shape), kernel_size, **{"iters": 1, **TINY, **options})


@pytest.mark.parametrize("options", [{"iters": 0}, {"kernel_size": 1}, {"nonlocal_scales": 6}, {"bogus": 1}])
def test_restorer_rejects_bad_options(options):
    with pytest.raises(InputError):
        build_restorer("selfdeblur", **options)
