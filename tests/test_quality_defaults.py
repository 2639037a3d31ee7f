"""The defaults chosen by measurement in issue 14 (studies/fastem/NOTES.md): Fast EM's λ, the kernel
prior's floor, the shipped kernel prior per kernel size, the default image prior."""

import pytest
import torch

from fdem.diffusion import ScheduleSpec
from fdem.errors import InputError
from fdem.kernel_ops import normalize_kernel
from fdem.mstep import MStepConfig
from fdem.presets import resolve
from fdem.priors import DEFAULT_PRIORS, SHIPPED_PRIORS
from fdem.sampling.blind_dps import KERNEL_FLOOR, SHIPPED_KERNEL_PRIORS, BlindDPSRestorer, kernel_from_x0
from fdem.problem import BlurProblem
from fdem.sampling.fast_em import FAST_EM_LAMBDA_SCALES, fast_em_hook, fast_em_lambda_scale


def test_fast_em_lambda_follows_the_noise_level():
    """The tuned multiples at their σ, log-linear between them, constant outside, one per image."""
    (s0, m0), (s1, m1) = FAST_EM_LAMBDA_SCALES[0], FAST_EM_LAMBDA_SCALES[-1]
    levels = torch.tensor([s for s, _ in FAST_EM_LAMBDA_SCALES]) / 255
    assert torch.allclose(fast_em_lambda_scale(levels), torch.tensor([m for _, m in FAST_EM_LAMBDA_SCALES]))
    outside = fast_em_lambda_scale(torch.tensor([0.0, s0 / 2 / 255, 4 * s1 / 255]))
    assert torch.allclose(outside, torch.tensor([m0, m0, m1]))
    (a, ma), (b, mb) = FAST_EM_LAMBDA_SCALES[-2:]
    middle = fast_em_lambda_scale(torch.tensor([(a * b) ** 0.5 / 255]))  # the geometric mean: half way in log σ
    assert torch.allclose(middle, torch.tensor([(ma + mb) / 2]))


def test_fast_em_scales_only_the_default_pnp_lambda(monkeypatch):
    """Under the ``noise`` λ rule (tuned and the presets after it) the hook passes the per-image scale to
    the M-step when λ is the default, and nothing otherwise; the paper's ``fixed`` rule never scales."""
    seen = []
    monkeypatch.setattr(MStepConfig, "update", lambda self, *a, lam_scale=None, **k: seen.append(lam_scale))
    problem = BlurProblem(torch.rand(2, 3, 16, 16), torch.tensor([5 / 255, 20 / 255]))
    schedule = ScheduleSpec().build(4)
    specs = [resolve("fastem-pigdm", "tuned", kernel_size=5), resolve("fastem-pigdm", "tuned", kernel_size=5, lam=0.05),
             resolve("fastem-pigdm", "paper", kernel_size=5), resolve("fastem-pigdm", "paper", kernel_size=5, reg="l1", lam=2.0)]
    for spec in specs:
        fast_em_hook(problem, schedule, spec)(None, None, 0)
    assert torch.allclose(seen[0], fast_em_lambda_scale(problem.sigma)) and seen[1:] == [None, None, None]
    with pytest.raises(InputError, match="needs the pnp regulariser"):  # the noise rule scales only the PnP weight
        resolve("fastem-pigdm", "tuned", kernel_size=5, reg="l1", lam=2.0)


def test_a_per_image_lambda_scale_sets_the_denoiser_level():
    """λ·scale per image reaches the kernel denoiser as its level √(λ·scale/β)."""
    levels = []
    mstep = MStepConfig(kernel_size=5, lam=0.2, iters=1, denoiser=lambda z, level: levels.append(level) or z)
    problem = BlurProblem(torch.rand(2, 3, 16, 16), 0.02)
    mstep.update(problem, torch.rand(2, 1, 3, 16, 16), init=None, weighting="official", r2=0.0, recenter=False,
                 lam_scale=torch.tensor([1.0, 4.0]))
    assert torch.allclose(levels[0], torch.tensor([0.2 / mstep.beta, 0.8 / mstep.beta]).sqrt())


def test_kernel_floor_removes_a_grey_background():
    x = torch.full((1, 1, 32, 32), -1 + 2 * 0.007)  # the samples' background: 0.7 % of the maximum
    x[0, 0, 16, 16] = 1.0
    assert KERNEL_FLOOR > 0.007
    k = kernel_from_x0(x)
    assert k[0, 0, 16, 16] == 1.0 and k.sum() == 1.0
    authors = kernel_from_x0(x, floor=0.0)
    assert torch.allclose(authors, normalize_kernel((x + 1) / 2))
    assert authors[0, 0, 16, 16] < 0.2  # without the floor the background takes most of the mass


def test_shipped_priors_per_kernel_size_and_default_image_prior():
    assert DEFAULT_PRIORS["image"] == "bsds64" and SHIPPED_PRIORS["bsds64"][0].is_file()
    for size, name in SHIPPED_KERNEL_PRIORS.items():
        assert SHIPPED_PRIORS[name][0].is_file()
        restorer = BlindDPSRestorer("blind-dps", kernel_size=size, steps=2)
        assert restorer.kernel_net.cfg.image_size == size


def test_the_photo_preset_floors_the_noise_level_of_the_sampler():
    """photo takes σ as at least 5/255 (design §15): a lower σ gives the run of σ = 5/255 exactly."""
    import torch

    from fdem.priors import Prior
    from fdem.restorers import build_restorer
    from tests.test_sampling import tiny_unet

    y = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(0))
    restorer = build_restorer("fastem-pigdm", "cpu", prior=Prior.of(tiny_unet()), preset="photo", kernel_size=5,
                              lam=0, steps=3)
    low, floor, high = (restorer.restore(y, s / 255, seed=1) for s in (1, 5, 8))
    assert torch.equal(low.image, floor.image) and not torch.equal(floor.image, high.image)
    assert build_restorer("fastem-pigdm", "cpu", prior=Prior.of(tiny_unet()), preset="few-step").spec.sampler.sigma_floor == 0
