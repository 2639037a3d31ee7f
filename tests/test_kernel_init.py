"""Where a blind sampler's kernel starts: the paper's Dirac or the prior-free alternation's kernel."""

import pytest
import torch

from fdem.baselines.alternation import wiener_alternation
from fdem.errors import InputError
from fdem.kernel_ops import dirac
from fdem.mstep import MStepConfig
from fdem.physics import blur
from fdem.presets import resolve
from fdem.problem import BlurProblem
from fdem.sampling.methods import alternation_kernel
from tests.helpers import sample
from tests.test_deblur_cli import _run, files  # noqa: F401  (the CLI fixture)
from tests.test_sampling import tiny_unet

MSTEP = MStepConfig(kernel_size=5, lam=0, recenter="bilinear")
OPTIONS = dict(mstep=MSTEP, steps=3, step_rule="ddim", start=0.5)


def blurred(seed: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    box = torch.zeros(1, 1, 5, 5)
    box[0, 0, 2, 1:4] = 1 / 3  # a horizontal stroke: the alternation's kernel is far from a Dirac
    return blur(torch.rand(2, 3, 16, 16, generator=g), box).clamp(0, 1)


def test_the_alternation_start_is_the_alternations_kernel_computed_once_per_image():
    y = blurred()
    start = alternation_kernel(BlurProblem(y, 0.02), resolve("fastem-pigdm", "tuned", kernel_size=5, lam=0))
    assert torch.allclose(start, wiener_alternation(y, 0.02, kernel_size=5)[1])  # its own λ, not the M-step's
    assert (start - dirac(2, 5)).abs().sum() > 0.1  # not the Dirac
    net = tiny_unet()
    chosen = sample("fastem-pigdm", net, y, 0.02, seed=4, kernel_init="alternation", **OPTIONS)
    given = sample("fastem-pigdm", net, y, 0.02, seed=4, kernel=start, **OPTIONS)
    assert torch.allclose(chosen.kernel, given.kernel, atol=1e-6) and torch.allclose(chosen.image, given.image, atol=1e-5)
    paper = sample("fastem-pigdm", net, y, 0.02, seed=4, **OPTIONS)
    assert not torch.allclose(paper.kernel, chosen.kernel, atol=1e-4)
    # with restarts every chain of an image starts from that image's alternation kernel
    restarted = sample("fastem-pigdm", net, y, 0.02, seed=4, kernel_init="alternation", restarts=2, **OPTIONS)
    assert restarted.kernel.shape == (2, 1, 5, 5)


def test_a_given_kernel_wins_over_the_named_start():
    y, start = blurred(3), torch.full((1, 1, 5, 5), 1 / 25)
    net = tiny_unet()
    named = sample("fastem-pigdm", net, y, 0.02, seed=1, kernel=start, kernel_init="alternation", **OPTIONS)
    plain = sample("fastem-pigdm", net, y, 0.02, seed=1, kernel=start, **OPTIONS)
    assert torch.equal(named.kernel, plain.kernel)


def test_an_unknown_start_is_refused_by_the_sampler_the_restorer_and_the_cli(files, tmp_path, capsys):  # noqa: F811
    from fdem.restorers import build_restorer

    with pytest.raises(InputError, match="unknown kernel_init 'gauss'"):
        sample("fastem-pigdm", tiny_unet(), torch.rand(1, 3, 16, 16), 0.05, kernel_init="gauss", **OPTIONS)
    with pytest.raises(InputError, match="kernel_init"):
        build_restorer("fastem-pigdm", "cpu", kernel_init="gauss")
    assert build_restorer("fastem-pigdm", "cpu", kernel_init="alternation").params()["kernel_init"] == "alternation"
    assert build_restorer("fastem-pigdm", "cpu", kernel_init="dirac").params()["kernel_init"] == "dirac"  # every row names it
    assert build_restorer("fastem-pigdm", "cpu").params()["kernel_init"] == "dirac"  # the paper preset's start
    assert build_restorer("fastem-pigdm", "cpu", preset="few-step").params()["kernel_init"] == "alternation"
    assert "kernel_init" not in build_restorer("pigdm", "cpu", kernel_init="alternation").params()  # non-blind: no start
    from fdem.sampling.step_plan import plan_restoration

    line = plan_restoration(build_restorer("fastem-pigdm", "cpu", steps=2, kernel_init="alternation"), 64, 64, timed=False).line("x")
    assert line.endswith("2 steps; kernel started from the alternation (before the steps, not in the time)")
    assert "kernel started" not in plan_restoration(build_restorer("fastem-pigdm", "cpu", steps=2), 64, 64, timed=False).line("x")
    code, err = _run(["deblur", str(files / "gray16.png"), "--sigma", "5", "--kernel-init", "gauss",
                      "--out", str(tmp_path / "bad")], capsys)
    assert code == 2 and "unknown kernel_init 'gauss'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad").exists()


def test_the_l0_start_is_the_l0_baselines_kernel():
    from fdem.baselines.l0_anger import l0_anger

    y = blurred(4)
    net = tiny_unet()
    start = l0_anger(y, 5)[1]  # the baseline's own kernel, at its article settings
    chosen = sample("fastem-pigdm", net, y, 0.02, seed=2, kernel_init="l0", **OPTIONS)
    given = sample("fastem-pigdm", net, y, 0.02, seed=2, kernel=start, **OPTIONS)
    assert torch.allclose(chosen.kernel, given.kernel, atol=1e-6) and torch.allclose(chosen.image, given.image, atol=1e-5)
    assert resolve("fastem-pigdm", "photo", kernel_init="l0").options()["kernel_init"] == "l0"


def test_the_coarse_start_is_fast_em_at_half_size_enlarged():
    from fdem.sampling.coarse_start import enlarge_kernel, half_problem, half_size

    k = torch.zeros(1, 1, 5, 5)
    k[0, 0, 2, 1:4] = torch.tensor([0.25, 0.5, 0.25])
    big = enlarge_kernel(k, 9)
    assert big.shape == (1, 1, 9, 9) and big.sum().item() == pytest.approx(1.0)
    assert big[0, 0, 4, 4] == big.max() and big[0, 0, 4, 2] > 0 and big[0, 0, 4, 0] == 0  # twice as long, centred
    assert (half_size(33), half_size(31), half_size(9)) == (17, 17, 5)
    y = torch.rand(2, 3, 20, 28)
    half = half_problem(BlurProblem(y, 0.04), 8)
    assert half.y.shape == (2, 3, 16, 16) and torch.allclose(half.sigma, torch.full((2,), 0.02))
    assert half.observed[0, 0, :10, :14].min() == 1 and half.observed[0, 0, 10:].max() == 0  # padding is missing data
    net = tiny_unet()
    steps = []
    r = sample("fastem-pigdm", net, blurred(5), 0.02, seed=1, kernel_init="coarse", callback=lambda u, k: steps.append(k), **OPTIONS)
    assert r.kernel.shape == (2, 1, 5, 5) and len(steps) == 6  # 3 steps at half size, 3 at full size
    assert steps[0].shape[-1] == 3 and steps[-1].shape[-1] == 5
    assert resolve("fastem-pigdm", "photo", kernel_init="coarse").network_calls() == 50  # per chain: 25 + 25
