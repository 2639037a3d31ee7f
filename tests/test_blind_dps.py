"""Blind-DPS: the coupled image/kernel chains on tiny random UNets, and the authors' kernel-prior layout."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fdem.diffusion import Schedule
from fdem.errors import InputError
from fdem.kernel_ops import center_of_mass, recenter
from fdem.nets.unet import build_unet
from fdem.priors import load_prior
from fdem.restorers import build_restorer
from fdem.sampling.blind_dps import Chain, blind_dps_step, kernel_from_x0, residual_norm, run_blind_dps
from fdem.sampling.methods import make_generators
from tests.helpers import state_dict_from_tsv

IMAGE_UNET = dict(image_size=16, in_channels=3, model_channels=32, channel_mult=(1, 2), attention_resolutions=(8,), num_head_channels=32)
KERNEL_UNET = dict(image_size=8, in_channels=1, model_channels=32, channel_mult=(1, 2), attention_resolutions=(4,), num_head_channels=32)
STEPS = 5


def tiny_unet(cfg: dict, seed: int) -> nn.Module:
    """Random weights, the (normally zero) output convolution included, so the chains do something."""
    torch.manual_seed(seed)
    net = build_unet(cfg)
    nn.init.normal_(net.out[-1].weight, std=0.05)
    return net.eval().requires_grad_(False)


@pytest.fixture(scope="module")
def priors(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("priors")
    torch.save(tiny_unet(IMAGE_UNET, 0).state_dict(), root / "image.pt")
    torch.save(tiny_unet(KERNEL_UNET, 1).state_dict(), root / "kernel.pt")
    return dict(prior=str(root / "image.pt"), prior_config=IMAGE_UNET, kernel_prior=str(root / "kernel.pt"),
                kernel_prior_config=KERNEL_UNET, kernel_size=8, steps=STEPS)


@pytest.fixture(scope="module")
def restorer(priors):
    return build_restorer("blind-dps", "cpu", **priors)


def observation(batch: int = 2, size: int = 16, seed: int = 3) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def test_restores_with_a_normalised_centred_kernel_and_counts_steps(restorer):
    calls = []
    r = restorer.restore(observation(), 0.05, seed=7, callback=lambda: calls.append(1))
    assert r.image.shape == (2, 3, 16, 16) and r.particles.shape == (2, 1, 3, 16, 16)
    assert 0 <= r.image.min() and r.image.max() <= 1 and torch.isfinite(r.image).all()
    assert r.kernel.shape == (2, 1, 8, 8) and r.kernel.min() >= 0
    torch.testing.assert_close(r.kernel.sum(dim=(-2, -1)), torch.ones(2, 1))
    raw = run_blind_dps(restorer.net, restorer.kernel_net, observation(), 8, STEPS, make_generators(7, 2, "cpu"))[1]
    torch.testing.assert_close(r.kernel, recenter(raw))  # re-centred by centre of mass
    assert (center_of_mass(r.kernel) - 4).abs().amax() < (center_of_mass(raw) - 4).abs().amax()
    assert len(calls) == restorer.total_steps() == STEPS
    assert restorer.params() == {"steps": STEPS, "kernel_size": 8, "kernel_l1": 0.0}


def test_any_image_size_is_padded_and_cropped(restorer):
    r = restorer.restore(torch.rand(1, 3, 13, 11), 0.05, seed=0)
    assert r.image.shape == (1, 3, 13, 11) and r.kernel.shape == (1, 1, 8, 8)


def test_batch_equals_images_alone_with_seed_plus_b(restorer):
    y = observation()
    together = restorer.restore(y, 0.05, seed=11)
    for b in range(2):
        alone = restorer.restore(y[b : b + 1], 0.05, seed=11 + b)
        torch.testing.assert_close(together.image[b], alone.image[0], atol=1e-5, rtol=0)
        torch.testing.assert_close(together.kernel[b], alone.kernel[0], atol=1e-6, rtol=0)


def test_deterministic_with_a_seed(restorer):
    y = observation(batch=1)
    first, again, other = (restorer.restore(y, 0.05, seed=s) for s in (5, 5, 6))
    assert torch.equal(first.image, again.image) and torch.equal(first.kernel, again.kernel)
    assert not torch.equal(first.kernel, other.kernel)


def test_step_is_the_unguided_step_minus_the_residual_gradient():
    image, kernel = Chain(tiny_unet(IMAGE_UNET, 0)), Chain(tiny_unet(KERNEL_UNET, 1))
    assert image.var_kind == kernel.var_kind == "learned_range"
    sched = Schedule.make(1000, STEPS)
    g = torch.Generator().manual_seed(0)
    x, xk, y = torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 1, 8, 8, generator=g), observation(1)
    noise = (torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 1, 8, 8, generator=g))
    i = 2
    x_next, xk_next, u, k0 = blind_dps_step(image, kernel, sched, x, xk, i, y, noise)

    x_in, xk_in = x.clone().requires_grad_(), xk.clone().requires_grad_()
    out, out_k = image.net(x_in, sched.timesteps[i].expand(1)), kernel.net(xk_in, sched.timesteps[i].expand(1))
    x0, x0k = sched.eps_to_x0(x_in, out[:, :3], i, clip=True), sched.eps_to_x0(xk_in, out_k[:, :1], i, clip=True)
    rho = residual_norm(y, ((x0 + 1) / 2).clamp(0, 1), kernel_from_x0(x0k)).sum()
    gx, gk = torch.autograd.grad(rho, (x_in, xk_in))
    w = sched.sqrt_alphas_cumprod[i] * sched.T / sched.num_steps  # √ᾱ_i·T/S
    expected = sched.ddpm_step(x, x0.detach(), i, noise[0], "learned_range", out[:, 3:].detach()) - w * gx
    expected_k = sched.ddpm_step(xk, x0k.detach(), i, noise[1], "learned_range", out_k[:, 1:].detach()) - w * gk
    torch.testing.assert_close(x_next, expected)
    torch.testing.assert_close(xk_next, expected_k)
    assert gk.abs().sum() > 0  # the observation steers the kernel chain
    torch.testing.assert_close(k0.sum(), torch.tensor(1.0))


def test_the_loop_never_reads_tensors_back_to_the_host(monkeypatch):
    image_net, kernel_net = tiny_unet(IMAGE_UNET, 0), tiny_unet(KERNEL_UNET, 1)
    y = observation(1)
    generators = make_generators(0, 1, y.device)

    def forbidden(*args, **kwargs):
        raise AssertionError("host synchronisation inside the sampler loop")

    for name in ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__"):
        monkeypatch.setattr(torch.Tensor, name, forbidden)
    image, kernel = run_blind_dps(image_net, kernel_net, y, 8, STEPS, generators, kernel_l1=0.1)
    monkeypatch.undo()
    assert image.shape == (1, 3, 16, 16) and kernel.shape == (1, 1, 8, 8)
    assert all(p.grad is None for p in list(image_net.parameters()) + list(kernel_net.parameters()))


def test_shipped_priors_are_the_defaults(priors, monkeypatch):
    import fdem.priors

    defaults = fdem.priors.DEFAULT_PRIORS
    monkeypatch.setitem(fdem.priors.SHIPPED_PRIORS, defaults["image"], (Path(priors["prior"]), IMAGE_UNET))
    monkeypatch.setitem(fdem.priors.SHIPPED_PRIORS, defaults["kernel"], (Path(priors["kernel_prior"]), KERNEL_UNET))
    r = build_restorer("blind-dps", kernel_size=8, steps=2).restore(observation(1), 0.0)
    assert r.kernel.shape == (1, 1, 8, 8)


def test_missing_shipped_kernel_prior_is_an_input_error(priors, tmp_path, monkeypatch):
    import fdem.priors

    monkeypatch.setitem(fdem.priors.SHIPPED_PRIORS, "kernel-small64", (tmp_path / "absent.pt", "kernel-small64"))
    with pytest.raises(InputError, match="shipped prior 'kernel-small64'"):
        build_restorer("blind-dps", prior=priors["prior"], prior_config=IMAGE_UNET)


def test_a_shipped_prior_is_named_like_a_file(priors, monkeypatch):
    """``kernel_prior: kernel-small64`` (a name of fdem.priors.SHIPPED_PRIORS) in a config or on the
    command line loads that shipped file with its architecture."""
    import fdem.priors
    from fdem.benchmarks.module import MethodSpec

    monkeypatch.setitem(fdem.priors.SHIPPED_PRIORS, "kernel-small64", (Path(priors["kernel_prior"]), KERNEL_UNET))
    spec = MethodSpec("blind-dps", {"kernel_prior": "kernel-small64", "prior": priors["prior"]})
    restorer = build_restorer("blind-dps", kernel_size=8, steps=2, prior_config=IMAGE_UNET, **spec.options)
    assert restorer.restore(observation(1), 0.0).kernel.shape == (1, 1, 8, 8)
    with pytest.raises(InputError, match="kernel_prior file not found: kernel-small99"):
        MethodSpec("blind-dps", {"kernel_prior": "kernel-small99"})


@pytest.mark.parametrize(
    "overrides, match",
    [({"kernel_size": 7}, "multiple of 2"), ({"steps": 1}, "steps"), ({"kernel_l1": -1.0}, "kernel_l1"),
     ({"kernel_prior_config": {**KERNEL_UNET, "in_channels": 3}}, "does not match")],
)
def test_bad_options(priors, overrides, match):
    with pytest.raises(InputError, match=match):
        build_restorer("blind-dps", **{**priors, **overrides})


def test_bad_observations(restorer):
    with pytest.raises(InputError, match="3-channel"):
        restorer.restore(torch.rand(1, 1, 16, 16), 0.05)
    with pytest.raises(InputError, match="larger than the image"):
        restorer.restore(torch.rand(1, 3, 4, 4), 0.05)


def test_authors_kernel_checkpoint_loads_strictly(tmp_path):
    state = state_dict_from_tsv("adm_kernel64_gray", torch.Generator().manual_seed(0))
    path = tmp_path / "kernel_checkpoint.pt"
    torch.save(state, path)
    net = load_prior(path, "kernel64").net
    assert sum(p.numel() for p in net.parameters()) == 17_057_474
    torch.testing.assert_close(net.state_dict()["out.2.weight"], state["out.2.weight"])
    default = load_prior(path, device=torch.device("cpu"), kind="kernel").net  # kernel64 is the default layout
    assert default.cfg.image_size == 64 and default.cfg.total_out_channels == 2


def test_the_priors_schedule_specs_set_the_chains_variance_and_must_agree():
    from fdem.diffusion import ScheduleSpec

    net = tiny_unet(KERNEL_UNET, 1)
    assert Chain(net).var_kind == Chain(net, ScheduleSpec(learned_sigma=True)).var_kind == "learned_range"
    assert Chain(net, ScheduleSpec()).var_kind == "fixed_small"  # a prior without a learned variance
    with pytest.raises(InputError, match="kernel_schedule"):
        run_blind_dps(tiny_unet(IMAGE_UNET, 0), net, observation(1), 8, STEPS, make_generators(0, 1, "cpu"),
                      kernel_schedule=ScheduleSpec(T=500, learned_sigma=True))
