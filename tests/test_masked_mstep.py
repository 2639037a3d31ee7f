"""The M-step's exact data steps: on observed pixels only (fdem/masked_mstep.py) and a kernel field's joint
normal equations (the same step with the field's windows), against dense least squares; leaving gaps out against refilling them."""

import torch

from fdem.field_problem import FieldProblem
from fdem.kernel_ops import kernel_mse, normalize_kernel
from fdem.masked_mstep import MaskedKernelDataTerm
from fdem.mstep import MStepConfig
from fdem.physics import add_noise, blur
from fdem.problem import BlurProblem


def _unit(k: int, index: int) -> torch.Tensor:
    e = torch.zeros(1, 1, k, k, dtype=torch.float64)
    e.view(-1)[index] = 1
    return e


def test_masked_data_step_equals_dense_least_squares():
    """argmin Σ_p Σ_c ‖m ⊙ (y_c − x_pc ⊛ z)‖² + C·α‖z − k‖² + C·extra‖z‖² per image, written out densely."""
    g = torch.Generator().manual_seed(0)
    b, n, c, h, w, k = 2, 2, 3, 14, 12, 5
    x = torch.rand(b, n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(b, c, h, w, generator=g, dtype=torch.float64)
    mask = (torch.rand(b, 1, h, w, generator=g) > 0.4).double()
    start = torch.rand(b, 1, k, k, generator=g, dtype=torch.float64)
    alpha, extra = torch.tensor([0.3, 2.0], dtype=torch.float64), torch.tensor([0.1, 0.0], dtype=torch.float64)
    ours = MaskedKernelDataTerm(BlurProblem(y, 0.05, mask), x, alpha=alpha, extra=extra, iters=30).solve(start)
    for i in range(b):
        columns = torch.stack([(blur(x[i], _unit(k, j)) * mask[i]).reshape(-1) for j in range(k * k)], dim=1)
        gram = columns.T @ columns + c * (alpha[i] + extra[i]) * torch.eye(k * k, dtype=torch.float64)
        rhs = columns.T @ (y[i].expand(n, c, h, w) * mask[i]).reshape(-1) + c * alpha[i] * start[i].reshape(-1)
        dense = torch.linalg.solve(gram, rhs)
        assert torch.allclose(ours[i].reshape(-1), dense, rtol=1e-8, atol=1e-10)


def test_leaving_gaps_out_recovers_the_kernel_in_one_m_step_where_refilling_them_lags():
    """Half the pixels unobserved, one M-step from a Dirac with the sharp image: the exact data step
    lands near the true kernel, the refilled one stays far closer to its start."""
    g = torch.Generator().manual_seed(3)
    x = torch.rand(1, 3, 48, 48, generator=g).cumsum(-1).cumsum(-2)
    x = (x - x.amin()) / (x.amax() - x.amin())
    x = x + 0.3 * torch.rand(x.shape, generator=g)
    truth = normalize_kernel(torch.rand(1, 1, 7, 7, generator=g) ** 4)
    y = add_noise(blur(x, truth), 0.01, generator=g)
    mask = torch.ones(1, 1, 48, 48)
    mask[..., :, :24] = 0
    errors = {}
    for missing in ("impute", "exclude"):
        problem = BlurProblem(y, 0.01, mask)
        mstep = MStepConfig(kernel_size=7, reg="l2", lam=0.0, missing=missing)
        start = normalize_kernel(torch.nn.functional.pad(torch.ones(1, 1, 1, 1), (3, 3, 3, 3)))
        problem.impute(x[:, None], start)
        kernel = mstep.update(problem, x[:, None], init=start, weighting="official", r2=0.0, recenter=False)
        errors[missing] = float(kernel_mse(kernel, truth)[0])
    assert errors["exclude"] < 0.2 * errors["impute"]


def test_joint_field_data_step_equals_dense_least_squares_of_product_convolution():
    """argmin Σ_p Σ_c ‖o ⊙ (y_c − Σ_m z_m ⊛ (w_m ⊙ x_pc))‖² + C·α Σ_m ‖z_m − k_m‖², all cells' kernels together."""
    g = torch.Generator().manual_seed(1)
    n, c, h, w, k, cells = 2, 2, 20, 16, 3, 4
    x = torch.rand(1, n, c, h, w, generator=g, dtype=torch.float64)
    y = torch.rand(1, c, h, w, generator=g, dtype=torch.float64)
    seen = (torch.rand(1, 1, h, w, generator=g) > 0.3).double()
    problem = FieldProblem(y, 0.05, seen, grid=(2, 2))
    start = torch.rand(1, cells, k, k, generator=g, dtype=torch.float64)
    alpha = torch.tensor([0.7], dtype=torch.float64)
    ours = MaskedKernelDataTerm(problem, x, alpha=alpha, windows=problem.windows, iters=60).solve(start)
    columns = []
    for j in range(cells * k * k):
        unit = torch.zeros(1, cells * k * k, dtype=torch.float64)
        unit[0, j] = 1
        columns.append((problem.forward(x, unit.reshape(1, cells, k, k)) * seen[:, None]).reshape(-1))
    columns = torch.stack(columns, dim=1)
    gram = columns.T @ columns + c * alpha * torch.eye(cells * k * k, dtype=torch.float64)
    rhs = columns.T @ (y[:, None].expand(1, n, c, h, w) * seen[:, None]).reshape(-1) + c * alpha * start.reshape(-1)
    torch.testing.assert_close(ours.reshape(-1), torch.linalg.solve(gram, rhs), rtol=1e-8, atol=1e-10)
