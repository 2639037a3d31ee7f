"""Blur that varies across the frame: the product-convolution operator (adjoint, reductions, windows,
gradients), the field's M-step and Fast EM with a field."""

import pytest
import torch

from fdem.errors import InputError
from fdem.field_problem import FieldProblem
from fdem.kernel_field import axis_weights, field_blur, field_blur_adjoint, field_windows, parse_grid
from fdem.kernel_ops import center_of_mass, normalize_kernel
from fdem.presets import resolve
from fdem.priors import Prior
from fdem.problem import BlurProblem
from fdem.restorers import build_restorer
from fdem.sampling.field_em import cell_gains, cell_particles, cell_problems, gate_to_anchor, recenter_field
from tests.test_sampling import tiny_unet


def seeded(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def test_windows_are_a_smooth_partition_of_unity_on_their_region():
    windows = field_windows((40, 52), (3, 4), region=((4, 6), (32, 40)))
    assert windows.shape == (12, 40, 52) and windows.min() >= 0
    torch.testing.assert_close(windows.sum(0), torch.ones(40, 52, dtype=torch.float64), rtol=0, atol=1e-12)
    rows = axis_weights(40, 3, 4, 32)
    assert rows[0, :4].eq(1).all() and rows[-1, -4:].eq(1).all()  # flat outside the region's centres
    assert (rows.diff(dim=1).abs().max() < 0.2)  # no jumps: at most ~π/2 per cell width of 11 px
    assert torch.equal(field_windows((8, 8), (1, 1)), torch.ones(1, 8, 8, dtype=torch.float64))


def test_one_cell_or_equal_kernels_is_the_uniform_blur_exactly():
    x, k = seeded(2, 3, 24, 28), normalize_kernel(seeded(2, 1, 5, 5, seed=1))
    uniform = BlurProblem(x, 0.01).forward(x, k)
    torch.testing.assert_close(field_blur(x, k, field_windows((24, 28), (1, 1), like=x)), uniform, rtol=0, atol=1e-12)
    field = k.expand(-1, 6, -1, -1)
    problem = FieldProblem(x, 0.01, grid=(2, 3))
    torch.testing.assert_close(problem.forward(x, field), uniform, rtol=0, atol=1e-12)
    v = seeded(2, 3, 24, 28, seed=2)
    torch.testing.assert_close(problem.adjoint(torch.fft.rfft2(v), field),
                               BlurProblem(x, 0.01).adjoint(torch.fft.rfft2(v), k), rtol=0, atol=1e-12)
    residual = torch.fft.rfft2(v).unsqueeze(1)
    noise = torch.full((2, 1, 1, 1, 1), 1e-4, dtype=torch.float64)
    torch.testing.assert_close(problem.pseudo_inverse(residual, field, 0.3, noise),
                               BlurProblem(x, 0.01).pseudo_inverse(residual, k, 0.3, noise), rtol=0, atol=1e-10)


def test_the_adjoint_is_the_transpose_and_gradients_flow():
    windows = field_windows((20, 24), (2, 2), like=seeded(1))
    field = normalize_kernel(seeded(2, 4, 7, 7, seed=3))
    x, y = seeded(2, 3, 20, 24, seed=4), seeded(2, 3, 20, 24, seed=5)
    lhs = (field_blur(x, field, windows) * y).sum()
    rhs = (x * field_blur_adjoint(y, field, windows)).sum()
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=0)
    problem = FieldProblem(y, 0.02, grid=(2, 2))
    particles = x.unsqueeze(1)
    torch.testing.assert_close(problem.forward(particles, field)[:, 0], field_blur(x, field, windows), rtol=0, atol=1e-12)
    small = (seeded(1, 1, 8, 9, seed=6).requires_grad_(), normalize_kernel(seeded(1, 4, 3, 3, seed=7)).requires_grad_())
    w = field_windows((8, 9), (2, 2), like=small[0])
    assert torch.autograd.gradcheck(lambda a, k: field_blur(a, k, w), small)


def test_a_field_differs_from_the_uniform_blur_where_its_kernels_differ():
    x = seeded(1, 1, 32, 32)
    field = torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    field[0, :, 2, 2] = 1
    field[0, 3] = 1 / 25  # the bottom-right cell blurs, the others do not
    y = field_blur(x, field, field_windows((32, 32), (2, 2), like=x))
    torch.testing.assert_close(y[..., 2:6, 2:6], x[..., 2:6, 2:6], rtol=0, atol=1e-12)  # identity cells only (past the wrap)
    assert (y[..., 24:, 24:] - x[..., 24:, 24:]).abs().mean() > 0.1


def test_grids_parse_and_bad_grids_are_refused():
    assert parse_grid("3x3") == (3, 3) and parse_grid("2X4") == (2, 4) and parse_grid([2, 3]) == (2, 3) and parse_grid(2) == (2, 2)
    for bad in ("3x", "0x3", "9x9", [1, 2, 3], True, 2.5):
        with pytest.raises(InputError, match="kernel_grid"):
            parse_grid(bad)
    with pytest.raises(InputError, match="kernel_window"):
        resolve("fastem-pigdm", "photo", kernel_grid="2x2")
    with pytest.raises(InputError, match="no kernel-field form"):
        resolve("diffem-pigdm", "paper", kernel_grid="2x2")
    assert resolve("fastem-pigdm", "field").canvas.kernel_grid == (3, 3)


def test_the_field_moves_by_one_common_shift():
    field = torch.zeros(1, 2, 9, 9)
    field[0, 0, 3, 3] = field[0, 1, 5, 6] = 1  # centres (3, 3) and (5, 6): mean (4, 4.5)
    moved = recenter_field(field, "bilinear")
    com = center_of_mass(moved).reshape(2, 2)
    torch.testing.assert_close(com.mean(0), torch.tensor([4.0, 4.0]))
    torch.testing.assert_close(com[1] - com[0], torch.tensor([2.0, 3.0]))  # the cells keep their offsets


@pytest.fixture(scope="module")
def tiny_prior():
    return Prior.of(tiny_unet())


def test_fast_em_with_a_field_returns_one_kernel_per_cell(tiny_prior):
    restorer = build_restorer("fastem-pigdm", "cpu", prior=tiny_prior, preset="field", kernel_size=5, lam=0, steps=3,
                              kernel_grid="2x2")
    y = torch.rand(2, 3, 24, 24, generator=torch.Generator().manual_seed(1))
    result = restorer.restore(y, 0.05, seed=3)
    assert result.image.shape == y.shape and result.kernel.shape == (2, 4, 5, 5)
    torch.testing.assert_close(result.kernel.sum(dim=(-2, -1)), torch.ones(2, 4))
    one = build_restorer("fastem-pigdm", "cpu", prior=tiny_prior, preset="field", kernel_size=5, lam=0, steps=3,
                         kernel_grid="2x2").restore(y[1:], 0.05, seed=4)
    torch.testing.assert_close(one.kernel, result.kernel[1:])  # images do not interact


def test_non_blind_sampling_takes_a_true_field(tiny_prior):
    restorer = build_restorer("pigdm", "cpu", prior=tiny_prior, preset="field", steps=3, kernel_grid="2x2")
    y = torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2))
    field = normalize_kernel(torch.rand(1, 4, 5, 5, generator=torch.Generator().manual_seed(3)))
    assert restorer.restore(y, 0.05, kernel=field, seed=0).image.shape == y.shape
    with pytest.raises(InputError, match=r"\(B, 4, k, k\)"):
        restorer.restore(y, 0.05, kernel=field[:, :3], seed=0)


def test_cell_gains_are_zero_under_one_kernel_and_large_where_the_blur_varies():
    x = seeded(1, 3, 48, 48)
    one, varied = torch.zeros(1, 4, 5, 5, dtype=torch.float64), torch.zeros(1, 4, 5, 5, dtype=torch.float64)
    one[..., 2, :] = 0.2
    varied[0, :2, 2, :] = 0.2  # the top cells blur horizontally, the bottom ones vertically
    varied[0, 2:, :, 2] = 0.2
    windows = field_windows((48, 48), (2, 2), like=x)
    uniform = FieldProblem(field_blur(x, one, windows), 0.01, grid=(2, 2))
    torch.testing.assert_close(cell_gains(uniform, cell_problems(uniform), cell_particles(uniform, x.unsqueeze(1)), one, one[:, :1]), torch.zeros(1, 4, dtype=torch.float64),
                               rtol=0, atol=1e-9)
    varying = FieldProblem(field_blur(x, varied, windows), 0.01, grid=(2, 2))
    gains = cell_gains(varying, cell_problems(varying), cell_particles(varying, x.unsqueeze(1)), varied,
                       one[:, :1])  # the anchor is the top cells' kernel
    assert gains[0, :2].abs().max() < 1e-9 and (gains[0, 2:] > 10).all()


def test_the_gate_pulls_cells_without_evidence_to_the_anchor_and_leaves_the_others():
    field, anchor = normalize_kernel(seeded(2, 4, 5, 5, seed=8)), normalize_kernel(seeded(2, 1, 5, 5, seed=9))
    torch.testing.assert_close(gate_to_anchor(field, torch.zeros(2, 4, dtype=torch.float64), 0.5, anchor),
                               anchor.expand_as(field))
    torch.testing.assert_close(gate_to_anchor(field, torch.full((2, 4), -3.0, dtype=torch.float64), 0.5, anchor),
                               anchor.expand_as(field))
    gains = torch.tensor([[1e9, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    gated = gate_to_anchor(field, gains, 0.5, anchor)
    torch.testing.assert_close(gated[0, 0], anchor[0, 0] + (field[0, 0] - anchor[0, 0]) * (1e9 / (1e9 + 0.5)))
    torch.testing.assert_close(gated[0, 2], anchor[0, 0] + 0.5 * (field[0, 2] - anchor[0, 0]))
    torch.testing.assert_close(gated.sum(dim=(-2, -1)), torch.ones(2, 4, dtype=torch.float64))


def test_the_field_gate_is_checked_and_recorded_only_when_on():
    assert "field_gate" not in resolve("fastem-pigdm", "field", field_gate=0).options()
    assert resolve("fastem-pigdm", "field").options()["field_gate"] == 3.0
    with pytest.raises(InputError, match="field_gate"):
        resolve("fastem-pigdm", "field", field_gate=-1)


def test_fast_em_with_the_gate_on_keeps_each_field_on_the_simplex(tiny_prior):
    restorer = build_restorer("fastem-pigdm", "cpu", prior=tiny_prior, preset="field", kernel_size=5, lam=0, steps=3,
                              kernel_grid="2x2", field_gate=0.5)
    result = restorer.restore(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2)), 0.05, seed=3)
    assert result.kernel.shape == (1, 4, 5, 5) and (result.kernel >= 0).all()
    torch.testing.assert_close(result.kernel.sum(dim=(-2, -1)), torch.ones(1, 4))


@pytest.mark.parametrize("gate", [0.0, 0.5])
def test_the_joint_field_solve_runs_with_the_prior_and_stays_on_the_simplex(tiny_prior, gate):
    restorer = build_restorer("fastem-pigdm", "cpu", prior=tiny_prior, preset="field", kernel_size=5, steps=3,
                              kernel_grid="2x2", field_gate=gate, field_solve="joint")
    result = restorer.restore(torch.rand(1, 3, 24, 24, generator=torch.Generator().manual_seed(2)), 0.05, seed=3)
    assert result.kernel.shape == (1, 4, 5, 5) and (result.kernel >= 0).all()
    torch.testing.assert_close(result.kernel.sum(dim=(-2, -1)), torch.ones(1, 4))
    assert resolve("fastem-pigdm", "field", field_solve="joint").options()["field_solve"] == "joint"
    assert "field_solve" not in resolve("fastem-pigdm", "field").options()
    with pytest.raises(InputError, match="field_solve"):
        resolve("fastem-pigdm", "field", field_solve="exact")
