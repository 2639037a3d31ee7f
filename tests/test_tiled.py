"""Tiled sampling (issue 16): blending weights, exactness of one tile and of a pointwise network,
the vector–Jacobian product through checkpointed tiles, the plan and memory, and the CLI's refusals."""

import re

import pytest
import torch
from torch import nn

from fdem.cli import main
from fdem.memory import Plan, estimate_bytes
from fdem.priors import Prior
from fdem.restorers import build_restorer
from fdem.sampling.tiled import TiledNet, Tiling, axis_weights, window_starts
from tests.test_deblur_cli import _assert_refused, files  # noqa: F401  (the CLI fixture)
from tests.test_sampling import tiny_unet


class Pointwise(nn.Module):
    """A per-pixel network (1×1 convolution and a tanh): tiling it and blending is exact."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 6, 1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) * (1 + t.float().view(-1, 1, 1, 1) / 1000)


@pytest.mark.parametrize("size, tile, overlap", [(100, 32, 8), (64, 64, 16), (70, 16, 0), (33, 16, 15)])
def test_windows_cover_the_axis_and_their_weights_sum_to_one(size, tile, overlap):
    starts, weights = axis_weights(size, tile, overlap)
    assert starts[0] == 0 and starts[-1] == size - tile and starts == window_starts(size, tile, overlap)
    total = torch.zeros(size, dtype=torch.float64)
    for s, w in zip(starts, weights):
        total[s:s + tile] += w
    assert torch.allclose(total, torch.ones_like(total)) and (weights > 0).all()


def test_a_pointwise_network_on_tiles_equals_the_whole_image_and_so_does_its_gradient():
    net = Pointwise()
    x = torch.randn(2, 3, 40, 56, requires_grad=True)
    t = torch.tensor([500, 500])
    tiled = TiledNet(net, tile=16, overlap=6, max_batch=3)
    assert tiled.count(40, 56) == len(window_starts(40, 16, 6)) * len(window_starts(56, 16, 6)) > 4
    whole, pieces = net(x, t), tiled(x, t)
    assert torch.allclose(whole, pieces, atol=1e-6)
    v = torch.randn_like(whole)
    (g_whole,) = torch.autograd.grad((whole * v).sum(), x)
    (g_tiled,) = torch.autograd.grad((pieces * v).sum(), x)  # through the checkpointed windows
    assert torch.allclose(g_whole, g_tiled, atol=1e-6)


@pytest.mark.parametrize("method", ["fastem-pigdm", "pigdm", "fastem-dps"])
def test_one_tile_covering_the_image_equals_the_untiled_sampler(method):
    net = tiny_unet()
    y = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    kernel = None if method.startswith("fastem") else torch.full((1, 1, 5, 5), 1 / 25)
    options = dict(prior=Prior.of(net), preset="tuned", kernel_size=5, lam=0, steps=4)
    plain = build_restorer(method, "cpu", **options)
    tiled = build_restorer(method, "cpu", tiled=True, tile=16, overlap=4, **options)
    assert plain.network_for(16, 16) is plain.net and isinstance(tiled.network_for(16, 16), TiledNet)
    plain, one = (r.restore(y, 0.05, kernel=kernel, seed=1) for r in (plain, tiled))
    assert torch.allclose(plain.image, one.image, atol=1e-5)
    if plain.kernel is not None:
        assert torch.allclose(plain.kernel, one.kernel, atol=1e-5)


def test_tiled_fast_em_runs_with_one_kernel_for_the_whole_image():
    y = torch.rand(1, 3, 16, 32, generator=torch.Generator().manual_seed(3))
    restorer = build_restorer("fastem-pigdm", "cpu", prior=Prior.of(tiny_unet()), preset="tuned", steps=3, tiled=True,
                              tile=16, overlap=8, kernel_size=5, lam=0)
    assert restorer.network_for(16, 32).count(16, 32) == 3  # windows at 0, 8, 16
    result = restorer.restore(y, 0.05)
    assert result.image.shape == y.shape and result.kernel.shape[0] == 1
    assert torch.isfinite(result.image).all()


def test_the_default_tiles_only_where_attention_would_dominate_the_canvas():
    from fdem.memory import ATTENTION_BYTES, FEATURE_BYTES, unet_features

    net = tiny_unet()  # native 16, attention at 8 and in the middle block: it dominates from 64² on
    for side in (32, 64):
        features, attention = unet_features(net.cfg, side, side)
        assert (Tiling().wrap(net, side, side) is net) == (ATTENTION_BYTES * attention <= FEATURE_BYTES * features)
    assert Tiling().wrap(net, 32, 32) is net and isinstance(Tiling().wrap(net, 64, 64), TiledNet)
    wrapped = Tiling().wrap(net, 160, 600)
    assert isinstance(wrapped, TiledNet) and wrapped.tile == 128 and wrapped.overlap == 32
    assert Tiling().wrap(net, 96, 600).tile == 96  # shrunk to the short side


def test_windows_are_checkpointed_only_beyond_the_memory_budget(monkeypatch):
    import fdem.sampling.tiled as tiled

    net = tiny_unet()
    assert not Tiling(tile=16).wrap(net, 32, 32).checkpointed  # 9 windows of 16², far under 4 GiB
    monkeypatch.setattr(tiled, "CHECKPOINT_BYTES", 9.5 * tiled.window_bytes(net, 16))
    assert not Tiling(tile=16).wrap(net, 32, 32, samples=1).checkpointed
    assert Tiling(tile=16).wrap(net, 32, 32, samples=2).checkpointed  # 18 windows' activations: over


def test_an_uncheckpointed_tiled_net_gives_the_same_vector_jacobian_product():
    net = tiny_unet()
    x = torch.randn(2, 3, 32, 48, generator=torch.Generator().manual_seed(0))
    t = torch.tensor([300, 300])
    results = []
    for checkpointed in (True, False):
        x_in = x.clone().requires_grad_(True)
        out = TiledNet(net, 16, 4, max_batch=3, checkpointed=checkpointed)(x_in, t)
        results.append((out.detach(), torch.autograd.grad(out.square().sum(), x_in)[0]))
    assert torch.equal(results[0][0], results[1][0]) and torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_a_tiled_plan_is_bounded_by_the_tile_batch_not_the_image():
    cfg = tiny_unet().cfg
    small, large = (Plan("fastem-pigdm", s, s, unet=cfg, tile=64, overlap=16, max_batch=2) for s in (256, 1024))
    untiled = Plan("fastem-pigdm", 1024, 1024, unet=cfg)
    assert estimate_bytes(large) < estimate_bytes(untiled) / 4
    per_pixel = (estimate_bytes(large) - estimate_bytes(small)) / (1024**2 - 256**2)
    assert per_pixel < 400  # full-size buffers only (FFTs, windows' inputs and outputs): no UNet term grows


@pytest.mark.parametrize("flags, message", [
    (["--tile", "512"], "--tile 512 is larger than the image"),
    (["--tile", "24", "--overlap", "24"], "--overlap must be in \\[0, tile\\)"),
    (["--tile", "20"], "--tile must be a positive multiple of 8"),
    (["--max-batch", "0"], "max_batch must be an integer >= 1"),
    (["--max-pixels", "1000"], "1,665 pixels, more than --max-pixels 1,000"),
    (["--border", "wrap"], "unknown border 'wrap': choose one of circular, reflect"),
])
def test_bad_tiling_flags_are_one_error_line_and_exit_code_2(files, tmp_path, capsys, flags, message):  # noqa: F811
    argv = ["deblur", str(files / "gray16.png"), "--sigma", "5", "--prior", str(files / "prior.pt"),
            "--prior-config", str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2",
            "--kernel-denoiser", str(files / "denoiser.pt"), "--out", str(tmp_path / "out"), *flags]
    _assert_refused(argv, capsys, tmp_path / "out", message)


def test_deblur_prints_its_tiled_plan_and_restores_the_whole_photo(files, tmp_path, capsys):  # noqa: F811
    main(["deblur", str(files / "photo.png"), "--sigma", "5", "--prior", str(files / "prior.pt"),
          "--prior-config", str(files / "prior.yaml"), "--kernel-size", "7", "--steps", "2", "--tile", "64",
          "--overlap", "16", "--kernel-denoiser", str(files / "denoiser.pt"), "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    plan = re.search(r"plan: photo.png 200x300 \(preset photo\), the kernel on a 160x160 window: canvas 168x168, \d+ tiles "
                     r"per step .*2 steps of 2 chains side by side, about .*; then the whole image with it: canvas (\d+)x(\d+), "
                     r"(\d+) tiles per step in \d+ batch\(es\), 2 steps, about", out)
    assert plan, out
    assert int(plan[1]) >= 206 and int(plan[2]) >= 306  # the imputed border of the kernel's radius
    assert (tmp_path / "out" / "photo_restored.png").is_file()


def test_the_smooth_border_keeps_the_image_and_closes_the_period_without_a_jump():
    from fdem.padding import smooth_pad

    x = torch.rand(2, 3, 30, 41, generator=torch.Generator().manual_seed(4))
    canvas, (top, left) = smooth_pad(x, 8, multiple=16)
    assert canvas.shape[-2:] == (48, 64) and min(top, left) >= 8
    assert torch.equal(canvas[..., top:top + 30, left:left + 41], x)
    pad_rows = torch.cat([canvas[..., :top, :], canvas[..., top + 30:, :]], dim=-2)
    step = (canvas.roll(-1, dims=-2) - canvas).abs()  # the wrap from the last row to the first included
    assert step[..., :top, :].max() < 0.2 and step[..., top + 30:, :].max() < 0.2  # a ramp, no jump
    assert pad_rows.shape[-2] == 18
