"""The kernel from the window of most detail, then the whole image non-blind: the window's choice,
the two runs' bookkeeping (steps, plan) and an image no larger than the window left as it was."""

import pytest
import torch

from fdem.priors import Prior
from fdem.presets import resolve
from fdem.restorers import build_restorer
from fdem.saturation import observed_mask
from fdem.sampling.kernel_window import best_windows, crop_windows, window_size
from tests.test_sampling import tiny_unet


def test_the_window_of_most_detail_is_chosen_on_observed_pixels():
    g = torch.Generator().manual_seed(0)
    y = torch.full((2, 3, 64, 96), 0.5)
    y[0, :, 10:42, 50:82] += 0.2 * torch.rand(3, 32, 32, generator=g)  # texture at (10, 50)
    y[1, :, 30:62, 4:36] += 0.2 * torch.rand(3, 32, 32, generator=g)
    assert best_windows(y, (32, 32)) == [(10, 50), (30, 4)]
    y[0, :, 30:62, 4:36] += 0.1 * torch.rand(3, 32, 32, generator=g)  # weaker texture elsewhere
    assert best_windows(y, (32, 32))[0] == (10, 50)
    y[0, :, 26, 66] = 1.0  # a clipped lamp in the middle of the strong texture: its reach is not data
    assert best_windows(y, (32, 32), observed_mask(y, 0.98, 31))[0] == (30, 4)
    crops = crop_windows(y, [(10, 50), (30, 4)], (32, 32))
    assert crops.shape == (2, 3, 32, 32) and torch.equal(crops[1], y[1, :, 30:62, 4:36])
    assert window_size(160, 100, 300) == (100, 160)


def test_steps_count_both_runs_only_on_images_over_the_window():
    spec = resolve("fastem-pigdm", "photo", kernel_window=80)
    assert spec.windowed(64, 81) and not spec.windowed(80, 80) and not resolve("pigdm", "photo", kernel_window=80).windowed(200, 200)
    whole = spec.whole_image_pass()
    assert whole.method == "pigdm" and whole.em.restarts == 1 and not whole.blind
    assert spec.network_calls((80, 80)) == 25 and spec.network_calls((64, 81)) == 50


@pytest.fixture(scope="module")
def windowed():
    return build_restorer("fastem-pigdm", "cpu", prior=Prior.of(tiny_unet()), preset="photo", kernel_size=5, lam=0,
                          steps=3, kernel_window=24)


def test_a_large_image_gets_the_window_kernel_and_is_restored_whole(windowed):
    y = torch.rand(1, 3, 24, 40, generator=torch.Generator().manual_seed(4))
    ticks = []
    result = windowed.restore(y, 0.05, seed=1, callback=lambda: ticks.append(1))
    assert result.image.shape == y.shape and result.kernel.shape == (1, 1, 5, 5)
    assert len(ticks) == windowed.total_steps((24, 40)) == 6
    corners, size = result.extras["kernel_window"]
    blind = build_restorer("fastem-pigdm", "cpu", prior=windowed.prior, preset="photo", kernel_size=5, lam=0, steps=3)
    part = y[..., corners[0][0]:corners[0][0] + size[0], corners[0][1]:corners[0][1] + size[1]]
    assert torch.allclose(blind.restore(part, 0.05, seed=1).kernel, result.kernel)  # the window's own run


def test_an_image_no_larger_than_the_window_is_one_blind_run(windowed):
    y = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(5))
    plain = build_restorer("fastem-pigdm", "cpu", prior=windowed.prior, preset="photo", kernel_size=5, lam=0, steps=3,
                           kernel_window=None)
    assert torch.equal(windowed.restore(y, 0.05, seed=1).image, plain.restore(y, 0.05, seed=1).image)


def test_the_plan_names_both_stages(windowed):
    from fdem.sampling.step_plan import plan_restoration

    line = plan_restoration(windowed, 24, 40, timed=False).line("x.png")
    assert "the kernel on a 24x24 window: canvas" in line and "3 steps of 2 chains" in line
    assert "then the whole image with it: canvas" in line
    assert "window" not in plan_restoration(windowed, 24, 24, timed=False).line("x.png")


def test_the_streak_start_is_found_on_the_whole_frame_not_the_window():
    restorer = build_restorer("fastem-pigdm", "cpu", prior=Prior.of(tiny_unet()), preset="photo", kernel_size=15, lam=0,
                              steps=2, kernel_window=32, kernel_init="streak")
    y = torch.full((1, 3, 24, 60), 0.2)
    y[..., 8:16, 6:18] += 0.2 * torch.rand(3, 8, 12, generator=torch.Generator().manual_seed(0))  # the window's detail
    y[..., 10:13, 45] = 1.0  # a short vertical streak far from it
    start = restorer._streak_start(y)
    assert start is not None and start[0, 0, :, 7].sum() > 0.99  # the streak's column, centred
    assert restorer._streak_start(torch.full((1, 3, 24, 60), 0.2)) is None  # no streak: the window's own start
    plain = build_restorer("fastem-pigdm", "cpu", prior=restorer.prior, preset="photo", kernel_size=15, lam=0, steps=2,
                           kernel_window=32)
    assert plain._streak_start(y) is None
