"""The method table: one entry per name, the registry and option schemas read from it."""

import pytest
import torch

from fdem.errors import InputError
from fdem.method_table import METHODS, is_em, lookup, method_names
from fdem.restorers import METHOD_CLASSES, check_options, method_options, restorer_class


def test_every_method_once_with_its_kind():
    names = method_names()
    assert len(names) == len(set(names)) == 12 and names == list(METHOD_CLASSES)
    diffusion = [m for m in METHODS if m.guidance is not None]
    assert {(m.guidance, m.em) for m in diffusion} == {(g, e) for g in ("dps", "pigdm") for e in (None, "fastem", "diffem")}
    assert [m.name for m in METHODS if not m.blind] == ["dps", "pigdm"]
    assert [m.name for m in METHODS if m.kernel_chain] == ["blind-dps"]
    assert [m.name for m in METHODS if m.score_prior] == names[:7]
    assert is_em("fastem-dps") and is_em("diffem-pigdm") and not is_em("pigdm") and not is_em("not-a-method")


def test_steps_and_network_calls():
    assert lookup("dps").default_steps == 1000 and lookup("fastem-pigdm").default_steps == 100
    assert lookup("diffem-pigdm").net_calls(None, 3) == 300 and lookup("diffem-pigdm").net_calls(7, 2) == 14
    assert lookup("blind-dps").net_calls() == 1000 and lookup("fastem-dps").net_calls(20, 5) == 20
    with pytest.raises(InputError, match="does not sample with a diffusion prior"):
        lookup("mprnet").net_calls()


def test_option_schemas_come_from_the_restorers():
    import inspect

    from fdem.presets import OVERRIDES, resolve

    options = method_options("fastem-pigdm")
    assert options[0] == "preset" and set(OVERRIDES) <= set(options) and {"prior", "trace_every"} <= set(options)
    assert method_options("dps") == options  # every diffusion sampler takes the preset and its fields
    assert resolve("fastem-pigdm").em.particles == 1 and resolve("dps").sampler.steps == 1000  # defaults: the presets'
    check_options("fastem-pigdm", {"preset": "photo", "restarts": 2})
    with pytest.raises(InputError, match=r"unknown option\(s\) \['mode'\]"):  # a preset, not a mode
        check_options("fastem-pigdm", {"mode": "paper"})
    assert "preset" not in method_options("blind-dps") and "kernel_size" in method_options("blind-dps")
    assert inspect.signature(restorer_class("blind-dps").__init__).parameters["kernel_size"].default == 64
    assert "iters" in method_options("selfdeblur") and "tv_iters" in method_options("l0-anger")
    check_options("alternation", {"rounds": 2})
    with pytest.raises(InputError, match="unknown option"):
        check_options("alternation", {"particles": 2})
    with pytest.raises(InputError, match="unknown method 'nope'"):
        lookup("nope")


def test_speed_grid_default_methods_are_the_tables():
    from fdem.benchmarks.speed_grid import ALL_METHODS

    assert ALL_METHODS == ["dps", "pigdm", "fastem-dps", "fastem-pigdm", "diffem-pigdm", "blind-dps"]


def test_synthetic_problems_are_deterministic():
    from fdem.synthetic import SIGMA, blur_problems, camera_shake, held_out_crops, synthetic_batch

    x, k, y = synthetic_batch(2, 32)
    again = synthetic_batch(2, 32)
    assert all(torch.equal(a, b) for a, b in zip((x, k, y), again))
    assert x.shape == y.shape == (2, 3, 32, 32) and k.shape == (2, 1, 17, 17)
    assert torch.allclose(k.sum(dim=(-2, -1)), torch.ones(2, 1))
    assert 0.5 * SIGMA < (y - blur_problems(x, k, 0.0)[2]).std() < 1.5 * SIGMA
    random = synthetic_batch(1, 16, kernel_size=5, images="random", seed=3)[0]
    assert not torch.equal(random, synthetic_batch(1, 16, kernel_size=5, images="random", seed=4)[0])
    crops = held_out_crops(64, per_image=2)
    assert crops.shape == (6, 3, 64, 64) and torch.equal(crops[0], crops[1])
    assert camera_shake(3, 9, seed=1).shape == (3, 1, 9, 9)
    with pytest.raises(InputError, match="images must be"):
        synthetic_batch(1, 16, images="photos")


def test_the_blurry_reference_returns_the_observation_and_a_dirac():
    from fdem.restorers import build_restorer

    y = torch.rand(2, 3, 16, 16) * 1.2 - 0.1
    out = build_restorer("blurry", kernel_size=5).restore(y, 0.05)
    assert torch.equal(out.image, y.clamp(0, 1)) and out.kernel.shape == (2, 1, 5, 5)
    assert torch.equal(out.kernel[:, 0, 2, 2], torch.ones(2)) and out.kernel.sum() == 2
