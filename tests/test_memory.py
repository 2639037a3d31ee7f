"""fdem.memory: the plan's estimate grows with size and batch, refusals name size, estimate, limit and what fits."""

import pytest

from fdem.errors import InputError
from fdem.memory import GIB, Plan, available_bytes, check_plan, estimate_bytes, memory_limit, restorer_plan
from fdem.nets.unet import NAMED_CONFIGS

SMALL = NAMED_CONFIGS["small64"]


def test_estimate_grows_with_size_and_batch_and_matches_the_calibration():
    one = estimate_bytes(Plan("fastem-pigdm", 256, 256, 3, 1, 0, SMALL))
    assert estimate_bytes(Plan("fastem-pigdm", 256, 256, 3, 2, 0, SMALL)) > 1.8 * one
    assert estimate_bytes(Plan("fastem-pigdm", 512, 512, 3, 1, 0, SMALL)) > 4 * one
    assert one / 2**20 == pytest.approx(1302, rel=0.15)  # the measured peak of the docstring
    assert estimate_bytes(Plan("l0-anger", 256, 256)) < one / 10  # FFT sized


def test_refusal_names_size_estimate_limit_and_a_size_that_fits():
    plan = Plan("fastem-pigdm", 10000, 10000, 3, 2, 10**6, SMALL)
    with pytest.raises(InputError, match=r"10000x10000 .* GB with fastem-pigdm, over the limit of 2.0 GB .*"
                                         r"at most about \d+x\d+ would fit.*fewer --particles"):
        check_plan(plan, 2 * GIB)
    assert check_plan(Plan("fastem-pigdm", 64, 64, 3, 1, 0, SMALL), 2 * GIB) < 2 * GIB


def test_limits():
    import torch

    assert memory_limit(torch.device("cpu"), 3.0) == 3 * GIB
    assert 0 < available_bytes(torch.device("cpu")) and memory_limit(torch.device("cpu")) < available_bytes(torch.device("cpu"))


def test_restorer_plan_pads_to_the_network_multiple_and_counts_parameters():
    from fdem.restorers import build_restorer

    restorer = build_restorer("pigdm", "cpu", steps=2, particles=3)
    plan = restorer_plan(restorer, 100, 70)
    assert (plan.height, plan.width, plan.batch) == (104, 72, 3)  # small64: multiples of 8
    assert plan.params == sum(p.numel() for p in restorer.net.parameters()) and plan.unet is not None
    assert restorer_plan(build_restorer("l0-anger", "cpu"), 100, 70).unet is None
