"""The authors' re-centring (cubic-spline shift, constant boundary) against scipy.ndimage."""

import numpy as np
import pytest
import torch
from scipy import ndimage

from fdem.kernel_ops import center_of_mass
from fdem.spline_shift import recenter_spline, shift_matrix, spline_shift, spline_target


def _kernels(size: int, batch: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(size)
    k = torch.rand(batch, 1, size, size, generator=g, dtype=torch.float64) ** 6
    k[:, :, : size // 3] = 0  # off-centre mass, so the shifts are large
    return k / k.sum(dim=(-2, -1), keepdim=True)


@pytest.mark.parametrize("size", [5, 8, 17, 33, 64])
def test_shift_equals_scipy(size):
    kernels = _kernels(size)
    shifts = torch.tensor([[0.37, -1.62], [-3.5, 2.0], [0.0, 4.91]], dtype=torch.float64)
    ours = spline_shift(kernels, shifts)
    for b in range(kernels.shape[0]):
        ref = ndimage.shift(kernels[b, 0].numpy(), shifts[b].numpy(), order=3, mode="constant")
        assert np.abs(ours[b, 0].numpy() - ref).max() < 1e-6


@pytest.mark.parametrize("size", [9, 16, 31, 32, 33, 64, 65])
def test_recenter_equals_the_authors_rule(size):
    """scipy's shift to the authors' target k//2 + 0.5·(1 − k mod 2) (their kernel_shift, scale factor 1)."""
    kernels = _kernels(size).float()
    ours = recenter_spline(kernels)
    for b in range(kernels.shape[0]):
        k = kernels[b, 0].double().numpy()
        wanted = np.array([size // 2 + 0.5 * (1 - size % 2)] * 2)
        ref = ndimage.shift(k, wanted - np.array(ndimage.center_of_mass(k)), order=3, mode="constant")
        assert np.abs(ours[b, 0].double().numpy() - ref).max() < 1e-6


def test_targets_and_centre_of_mass():
    """A compact kernel away from the border keeps its mass, and its centre lands on the target."""
    assert (spline_target(33), spline_target(64), spline_target(32), spline_target(65)) == (16, 32.5, 16.5, 32)
    kernels = torch.zeros(1, 1, 33, 33, dtype=torch.float64)
    kernels[..., 20:25, 8:11] = torch.rand(5, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    centred = recenter_spline(kernels / kernels.sum())
    assert centred.sum() == pytest.approx(1.0, abs=1e-5)  # the prefilter's tail reaches the border
    assert torch.allclose(center_of_mass(centred), torch.full((1, 2), 16.0, dtype=torch.float64), atol=1e-4)


def test_whole_pixel_shift_inside_is_exact():
    v = torch.zeros(1, 1, 7, 7, dtype=torch.float64)
    v[..., 2, 3] = 1
    out = spline_shift(v, torch.tensor([[1.0, -2.0]], dtype=torch.float64))
    assert out[0, 0, 3, 1] == pytest.approx(1.0) and out.abs().sum() == pytest.approx(1.0)
    assert shift_matrix(torch.zeros(1, dtype=torch.float64), 7)[0].allclose(torch.eye(7, dtype=torch.float64))


def test_the_m_step_takes_the_recenter_rule():
    """The M-step's ``recenter`` picks the re-centring: spline output equals recenter_spline."""
    from fdem.mstep import MStepConfig
    from fdem.problem import BlurProblem
    from fdem.errors import InputError

    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 3, 32, 32, generator=g)
    y = torch.rand(1, 3, 32, 32, generator=g)
    problem = BlurProblem(y, torch.tensor([0.02]))
    kernels = {}
    for rule in ("bilinear", "spline", "none"):
        cfg = MStepConfig(kernel_size=9, reg="l1", lam=1.0, recenter=rule)
        kernels[rule] = cfg.update(problem, x, init=None, weighting="official", r2=0.0, recenter=True)
    plain = MStepConfig(kernel_size=9, reg="l1", lam=1.0).update(problem, x, init=None, weighting="official", r2=0.0,
                                                                recenter=False)
    assert torch.allclose(kernels["spline"], recenter_spline(plain), atol=1e-6)
    assert torch.equal(kernels["none"], plain)
    assert not torch.allclose(kernels["spline"], kernels["bilinear"], atol=1e-4)
    with pytest.raises(InputError, match="recenter"):
        MStepConfig(recenter="cubic")


def test_the_restorer_takes_the_recenter_rule_and_the_r2_and_weighting_options():
    from fdem.errors import InputError
    from fdem.restorers import build_restorer

    y = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    r = build_restorer("fastem-pigdm", "cpu", kernel_size=9, steps=2, recenter="bilinear", r2_rule="paper")
    assert r.params()["recenter"] == "bilinear" and r.spec.em.mstep.recenter == "bilinear"
    assert r.params()["r2_rule"] == "paper" and r.params()["preset"] == "paper"
    assert r.restore(y, 0.02, seed=0).kernel.shape == (1, 1, 9, 9)
    for bad in ({"recenter": "cubic"}, {"r2_rule": "nope"}, {"weighting": "nope"}, {"mode": "official"}):
        with pytest.raises(InputError):
            build_restorer("fastem-pigdm", "cpu", kernel_size=9, steps=2, **bad)
