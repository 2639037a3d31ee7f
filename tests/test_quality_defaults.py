"""The defaults chosen by measurement in issue 14 (docs/fastem_study.md): Fast EM's λ, the kernel
prior's floor, the shipped kernel prior per kernel size, the default image prior."""

import torch

from fdem.kernel_ops import normalize_kernel
from fdem.mstep import MStepConfig, default_lambda
from fdem.priors import DEFAULT_PRIORS, SHIPPED_PRIORS
from fdem.sampling.blind_dps import KERNEL_FLOOR, SHIPPED_KERNEL_PRIORS, BlindDPSRestorer, kernel_from_x0
from fdem.sampling.fast_em import FAST_EM_LAMBDA_SCALE, fast_em_mstep


def test_fast_em_scales_only_the_default_lambda():
    scaled = fast_em_mstep(MStepConfig(kernel_size=33))
    assert scaled.lam == FAST_EM_LAMBDA_SCALE * default_lambda(33)
    assert fast_em_mstep(MStepConfig(kernel_size=33, lam=0.05)).lam == 0.05
    assert fast_em_mstep(MStepConfig(kernel_size=33, reg="l1", lam=2.0)).lam == 2.0


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
